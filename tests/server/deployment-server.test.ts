import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { createDeploymentClient } from "../../src/client.ts";
import type { AgentStatus } from "../../src/core/agent-status.ts";
import type { Logger } from "../../src/core/logger.ts";
import { DeployError, DeploymentServer, type WatchEvent } from "../../src/index.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { RpcError } from "../../src/rpc/grpc-client.ts";
import { faultAgentToml } from "../supervisor/harness.ts";

const servers: DeploymentServer[] = [];
const pids = new Set<number>();
const dirs: string[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  // Retries: an output keeper that was just told to stop may still be removing its own files.
  for (const dir of dirs.splice(0)) {
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
  expect(left).toEqual([]);
});

let nextBase = 30_100 + (process.pid % 20) * 40;

interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly fields: Readonly<Record<string, unknown>> | undefined;
}

function recordingLogger(): Logger & { readonly lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: string) =>
    (msg: string, fields?: Readonly<Record<string, unknown>>): void => {
      lines.push({ level, msg, fields });
    };
  return {
    lines,
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
  };
}

/** A temp dir with an agents directory holding `agents` (name → agent.toml text). */
async function workspace(agents: Record<string, string>) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-server-"));
  dirs.push(dir);
  const agentsDirectory = path.join(dir, "agents");
  await mkdir(agentsDirectory);
  for (const [name, toml] of Object.entries(agents)) {
    await mkdir(path.join(agentsDirectory, name));
    await writeFile(path.join(agentsDirectory, name, "agent.toml"), toml);
  }
  const basePort = nextBase;
  nextBase += 10;
  return { dir, agentsDirectory, stateDir: path.join(dir, "state"), basePort };
}

function track(server: DeploymentServer): DeploymentServer {
  servers.push(server);
  return server;
}

function remember(status: AgentStatus): AgentStatus {
  if (status.pid > 0) pids.add(status.pid);
  return status;
}

async function rejection(promise: Promise<unknown>): Promise<DeployError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof DeployError)) throw new Error(`expected a DeployError, got ${error}`);
  return error;
}

function thrown(run: () => unknown): DeployError {
  try {
    run();
  } catch (error) {
    if (error instanceof DeployError) return error;
    throw error;
  }
  throw new Error("nothing thrown");
}

/** Inodes of the listening TCP and Unix sockets this process holds. */
function listeningSockets(): Set<string> {
  const mine = new Set<string>();
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (match?.[1] !== undefined) mine.add(match[1]);
    } catch {
      // The fd closed while listing (the listing's own, for one).
    }
  }
  const listening = new Set<string>();
  for (const table of ["tcp", "tcp6"]) {
    for (const line of readFileSync(`/proc/net/${table}`, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      // st 0A = LISTEN; column 9 is the inode.
      if (cols[3] === "0A" && cols[9] !== undefined && mine.has(cols[9])) listening.add(cols[9]);
    }
  }
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    // Flags 00010000 = __SO_ACCEPTCON (listening); column 6 is the inode.
    if (cols[3] === "00010000" && cols[6] !== undefined && mine.has(cols[6])) {
      listening.add(cols[6]);
    }
  }
  return listening;
}

describe("DeploymentServer", () => {
  it("starts, deploys, reports, restarts and stops an agent without opening a socket", async () => {
    const ws = await workspace({ a: faultAgentToml("a"), b: faultAgentToml("b") });
    const before = listeningSockets();
    const logger = recordingLogger();
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        host: "127.0.0.1",
        basePort: ws.basePort,
        logger,
      }),
    );
    expect(server.config.listen).toBeUndefined();
    await server.start();
    expect(server.address).toBeUndefined();

    const started = remember(await server.startAgent("a"));
    expect(started).toMatchObject({ name: "a", state: "RUNNING", health: "HEALTHY" });
    expect(started.port).toBe(ws.basePort);
    expect(await server.getAgentStatus("a")).toMatchObject({ state: "RUNNING", pid: started.pid });
    expect((await server.listAgents()).map((s) => [s.name, s.state])).toEqual([
      ["a", "RUNNING"],
      ["b", "DISCOVERED"],
    ]);
    const restarted = remember(await server.restartAgent("a"));
    expect(restarted.pid).not.toBe(started.pid);
    expect(restarted.port).toBe(started.port);
    expect(listeningSockets()).toEqual(before);

    expect(await server.stopAgent("a")).toMatchObject({ state: "STOPPED", pid: 0 });
    expect(await server.stop()).toEqual({ killedAgents: false });
    const config = logger.lines.find((l) => l.msg === "effective configuration")?.fields;
    expect(config?.config).toMatchObject({ base_port: ws.basePort, listen: null });
    expect(config?.sources).toMatchObject({ base_port: "option", max_agents: "default" });
  });

  it("throws DeployError with the ErrorInfo reason, and before start SERVER_NOT_STARTED", async () => {
    const ws = await workspace({ a: faultAgentToml("a") });
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        logger: recordingLogger(),
      }),
    );
    expect((await rejection(server.listAgents())).reason).toBe("SERVER_NOT_STARTED");
    await server.start();
    const missing = await rejection(server.startAgent("nope"));
    expect(missing).toMatchObject({ reason: "AGENT_NOT_FOUND", code: "AGENT_NOT_FOUND" });
    expect((await rejection(server.getAgentStatus("../x"))).reason).toBe("INVALID_AGENT_NAME");
    await server.stop();
    expect((await rejection(server.listAgents())).reason).toBe("SERVER_SHUTTING_DOWN");
    expect((await rejection(server.start())).reason).toBe("SERVER_SHUTTING_DOWN");
  });

  it("checks its options as strictly as the config file and names the option", () => {
    expect(thrown(() => new DeploymentServer({ basePort: 70_000 })).message).toBe(
      "DeploymentServer option basePort: must be an integer between 1 and 65535, got 70000",
    );
    const wrongType = thrown(() => new DeploymentServer({ maxAgents: "5" as unknown as number }));
    expect(wrongType).toMatchObject({ reason: "INVALID_ARGUMENT" });
    expect(wrongType.message).toMatch(/option maxAgents: must be a positive integer, got "5"/);
    expect(
      thrown(() => new DeploymentServer({ basePrt: 1 } as unknown as { basePort: number })).message,
    ).toBe("DeploymentServer option basePrt is unknown (did you mean basePort?)");
    expect(thrown(() => new DeploymentServer({ tlsKey: "/k.pem" })).message).toMatch(
      /option tlsKey: is set but tls_cert is not/,
    );
  });

  it("rejects start for a missing agents directory and leaves nothing running", async () => {
    const ws = await workspace({});
    const server = track(
      new DeploymentServer({
        agentsDirectory: path.join(ws.dir, "missing"),
        stateDir: ws.stateDir,
        logger: recordingLogger(),
      }),
    );
    const error = await rejection(server.start());
    expect(error.reason).toBe("INVALID_ARGUMENT");
    expect(error.message).toContain(path.join(ws.dir, "missing"));
    expect(await server.stop()).toEqual({ killedAgents: false });
  });

  it("serves gRPC on listen, reached by createDeploymentClient with a token", async () => {
    const ws = await workspace({ a: faultAgentToml("a") });
    const tokenFile = path.join(ws.dir, "token");
    await writeFile(tokenFile, "s3cret\n");
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        host: "127.0.0.1",
        basePort: ws.basePort,
        listen: "127.0.0.1:0",
        authTokenFile: tokenFile,
        logger: recordingLogger(),
      }),
    );
    await server.start();
    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
    const client = createDeploymentClient(server.address ?? "", { token: "s3cret" });
    const anonymous = createDeploymentClient(server.address ?? "");
    try {
      const agent = (await client.deploy({ name: "a" })).agent;
      remember({ pid: agent?.pid ?? 0 } as AgentStatus);
      expect(agent).toMatchObject({ name: "a", state: AgentState.RUNNING });
      expect((await server.getAgentStatus("a")).pid).toBe(agent?.pid);
      const refused = await anonymous.listAgents({}).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(RpcError);
      expect((refused as RpcError).reason).toBe("UNAUTHENTICATED");
    } finally {
      client.close();
      anonymous.close();
    }
    expect(await server.stop()).toEqual({ killedAgents: false });
  });

  it("serves the dashboard and metrics on httpListen, which needs listen", async () => {
    const ws = await workspace({ a: faultAgentToml("a") });
    const alone = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        httpListen: "127.0.0.1:0",
        logger: recordingLogger(),
      }),
    );
    const refused = await rejection(alone.start());
    expect(refused.reason).toBe("INVALID_ARGUMENT");
    expect(refused.message).toMatch(/httpListen needs listen/);
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: path.join(ws.dir, "state2"),
        listen: "127.0.0.1:0",
        httpListen: "127.0.0.1:0",
        logger: recordingLogger(),
      }),
    );
    await server.start();
    expect(server.httpUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const metrics = await fetch(`${server.httpUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('atoll_agent_state{agent="a",state="discovered"} 1');
  });

  it("fails start with SERVER_START_FAILED on a busy address and starts no agent", async () => {
    const ws = await workspace({ a: faultAgentToml("a", { deployment: { autostart: "true" } }) });
    const first = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: path.join(ws.dir, "one"),
        basePort: ws.basePort,
        listen: "127.0.0.1:0",
        logger: recordingLogger(),
      }),
    );
    await first.start();
    for (const s of await first.listAgents()) remember(s);
    const second = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: path.join(ws.dir, "two"),
        basePort: ws.basePort + 5,
        listen: first.address,
        logger: recordingLogger(),
      }),
    );
    const error = await rejection(second.start());
    expect(error.reason).toBe("SERVER_START_FAILED");
    expect(error.message).toMatch(/cannot listen on 127\.0\.0\.1:\d+/);
  });

  it("watches: a snapshot, its end marker, then every change, until stopped", async () => {
    const ws = await workspace({ a: faultAgentToml("a"), b: faultAgentToml("b") });
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        host: "127.0.0.1",
        basePort: ws.basePort,
        logger: recordingLogger(),
      }),
    );
    await server.start();
    const events: WatchEvent[] = [];
    let sawRunning: () => void = () => {};
    const running = new Promise<void>((resolve) => {
      sawRunning = resolve;
    });
    const done = (async () => {
      for await (const event of server.watch({ names: ["a"] })) {
        events.push(event);
        if (event.type === "CHANGE" && event.agent.state === "RUNNING") sawRunning();
      }
    })();
    remember(await server.startAgent("a"));
    await running;
    await server.stop();
    await done; // ends without an error when the server stops
    expect(events.slice(0, 2).map((e) => e.type)).toEqual(["SNAPSHOT", "SNAPSHOT_COMPLETE"]);
    const first = events[0];
    expect(first?.type === "SNAPSHOT" && first.agent.name).toBe("a");
    const changes = events.flatMap((e) => (e.type === "CHANGE" ? [e] : []));
    expect(changes.map((e) => e.agent.name)).toEqual(changes.map(() => "a"));
    const revisions = events.slice(1).map((e) => e.revision);
    expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
    const startRevision = changes[0]?.revision ?? 0;

    // A new server on the same state dir: resuming after a revision it never had gives a snapshot.
    const again = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        host: "127.0.0.1",
        basePort: ws.basePort,
        logger: recordingLogger(),
      }),
    );
    await again.start();
    for (const s of await again.listAgents()) remember(s);
    const controller = new AbortController();
    const resumed: WatchEvent[] = [];
    for await (const event of again.watch({
      resumeAfterRevision: startRevision,
      signal: controller.signal,
    })) {
      resumed.push(event);
      if (event.type === "SNAPSHOT_COMPLETE") controller.abort();
    }
    expect(resumed.map((e) => e.type)).toEqual(["SNAPSHOT", "SNAPSHOT", "SNAPSHOT_COMPLETE"]);
    expect(resumed.at(-1)?.revision).toBeGreaterThan(startRevision);
  });

  it("finds a new definition at once with discoverAgents", async () => {
    const ws = await workspace({ a: faultAgentToml("a") });
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        logger: recordingLogger(),
      }),
    );
    await server.start();
    await mkdir(path.join(ws.agentsDirectory, "c"));
    await writeFile(path.join(ws.agentsDirectory, "c", "agent.toml"), faultAgentToml("c"));
    expect((await server.discoverAgents()).map((s) => s.name)).toEqual(["a", "c"]);
  });

  it("runs the bundled atoll-agent runtime for a definition without a command", async () => {
    const ws = await workspace({
      echo: '[agent]\nname = "echo"\n\n[llm]\nmodel = "echo"\n\n[deployment]\nstop_timeout = 2\n',
    });
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        host: "127.0.0.1",
        basePort: ws.basePort,
        logger: recordingLogger(),
        env: { ...process.env, HOME: ws.dir },
      }),
    );
    await server.start();
    const agent = remember(await server.startAgent("echo"));
    const response = await fetch(`http://127.0.0.1:${agent.port}/prompt`, {
      method: "POST",
      body: JSON.stringify({ prompt: "hello" }),
    });
    expect(await response.json()).toEqual({ response: "[echo] hello", model: "echo" });
  });
});

describe("DeploymentServer lifecycle", () => {
  it("refuses a start once stop was called, even in the same turn", async () => {
    const ws = await workspace({ a: faultAgentToml("a", { deployment: { autostart: "true" } }) });
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        logger: recordingLogger(),
      }),
    );
    const stopped = server.stop();
    expect((await rejection(server.start())).reason).toBe("SERVER_SHUTTING_DOWN");
    expect(await stopped).toEqual({ killedAgents: false });
  });

  it("stops after a start still in progress, and stops the agents it started", async () => {
    const ws = await workspace({ a: faultAgentToml("a", { deployment: { autostart: "true" } }) });
    const logger = recordingLogger();
    const server = track(
      new DeploymentServer({
        agentsDirectory: ws.agentsDirectory,
        stateDir: ws.stateDir,
        host: "127.0.0.1",
        basePort: ws.basePort,
        logger,
      }),
    );
    const started = server.start();
    const stopped = server.stop();
    await started;
    expect(await stopped).toEqual({ killedAgents: false });
    expect(logger.lines.map((l) => l.msg)).toContain("stopped");
  });
});
