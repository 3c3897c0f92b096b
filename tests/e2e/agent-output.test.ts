/**
 * Agent output end to end (SPEC §4): a real daemon, its output keeper and flooding agents.
 */
import { execFile } from "node:child_process";
import { mkdir, readFile, readlink, symlink, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { type AddressInfo, createServer } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { KEEPER_ENV } from "../../src/platform/keeper/protocol.ts";
import { findGroupLeadersWithEnv } from "../../src/platform/proc-info.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { waitUntilAsync } from "../platform/helpers.ts";
import { checkSequence, DiskSampler, FLOOD_AGENT } from "../platform/log-check.ts";
import { CLI, type Daemon, startDaemon, workspace } from "./daemon.ts";

const daemons: Daemon[] = [];
const pids = new Set<number>();
const stateDirs = new Set<string>();
let cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop("SIGTERM");
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  const keepers: number[] = [];
  for (const stateDir of stateDirs) {
    for (const leader of findGroupLeadersWithEnv(KEEPER_ENV, stateDir)) {
      keepers.push(leader.stat.pid);
      process.kill(-leader.stat.pid, "SIGKILL");
    }
  }
  stateDirs.clear();
  for (const c of cleanups.splice(0)) await c();
  cleanups = [];
  expect(left).toEqual([]);
  expect(keepers).toEqual([]);
});

interface FloodStats {
  readonly written: number;
  readonly lines: number;
  readonly errors: number;
  readonly maxWriteMs: number;
  readonly flooding: boolean;
}

function floodToml(name: string, env: Record<string, string>, deployment: string): string {
  const vars = Object.entries(env)
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
    .join("\n");
  return `[agent]
name = "${name}"

[deployment]
command = [${JSON.stringify(process.execPath)}, ${JSON.stringify(FLOOD_AGENT)}]
health_check_interval = 0.5
start_timeout = 20
stop_timeout = 2
${deployment}

[deployment.env]
${vars}
`;
}

async function setup(env: Record<string, string>, deployment: string, extraArgs: string[] = []) {
  const ws = await workspace({ a: { file: "agent.toml", text: floodToml("a", env, deployment) } });
  cleanups.push(ws.cleanup);
  stateDirs.add(ws.stateDir);
  const basePort = 26_000 + (process.pid % 40) * 50;
  const args = [
    "--agents-dir",
    ws.agentsDir,
    "--state-dir",
    ws.stateDir,
    "--base-port",
    String(basePort),
    "--host",
    "127.0.0.1",
    ...extraArgs,
  ];
  return { ws, args, logPath: path.join(ws.stateDir, "logs", "a.log") };
}

async function start(args: string[]): Promise<Daemon> {
  const daemon = await startDaemon(args);
  daemons.push(daemon);
  return daemon;
}

/** The flood agent's own figures, from its /status. */
function agentStats(port: number): Promise<FloodStats> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/status", timeout: 5_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve(JSON.parse(body) as FloodStats));
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.end();
  });
}

function keeperPids(stateDir: string): number[] {
  return findGroupLeadersWithEnv(KEEPER_ENV, stateDir).map((l) => l.stat.pid);
}

describe("agent output", () => {
  it("stays within the bound while the daemon is killed and the next one adopts the flooding agent", async () => {
    const { ws, args, logPath } = await setup(
      { FLOOD_RATE: "5000000" },
      'log_max_bytes = "256KiB"\nlog_keep = 2',
    );
    const bound = 3 * 256 * 1024 + 64 * 1024;
    const sampler = new DiskSampler(logPath);
    const first = await start(args);
    const agent = (await first.client.deploy({ name: "a" })).agent;
    const pid = agent?.pid ?? 0;
    const port = agent?.port ?? 0;
    pids.add(pid);
    const [keeper] = keeperPids(ws.stateDir);
    expect(keeper).toBeDefined();

    daemons.splice(daemons.indexOf(first), 1);
    expect(await first.stop("SIGKILL")).toBe("SIGKILL");
    // No daemon: the agent keeps writing, into the same FIFO, drained by the same keeper.
    const before = (await agentStats(port)).written;
    await waitUntilAsync(
      async () => (await agentStats(port)).written > before + 2_000_000,
      "the agent wrote 2 MB more with no daemon",
    );
    const fifo = path.join(ws.stateDir, "keeper", "fifo", "a");
    expect(await readlink(`/proc/${pid}/fd/1`)).toBe(fifo);
    expect(await readlink(`/proc/${pid}/fd/2`)).toBe(fifo);

    const second = await start(args);
    expect((await second.client.getStatus({ name: "a" })).agent).toMatchObject({
      state: AgentState.RUNNING,
      stateReason: "ADOPTED",
      pid,
    });
    expect(keeperPids(ws.stateDir)).toEqual([keeper]); // reconnected, not replaced
    const adopted = (await agentStats(port)).written;
    await waitUntilAsync(
      async () => (await agentStats(port)).written > adopted + 2_000_000,
      "the adopted agent wrote 2 MB more",
    );
    sampler.stop();
    const stats = await agentStats(port);
    expect(sampler.peakBytes).toBeLessThanOrEqual(bound);
    expect(sampler.peakAllocated).toBeLessThanOrEqual(bound);
    expect(stats.errors).toBe(0);
    expect(stats.maxWriteMs).toBeLessThan(2_000);

    daemons.splice(daemons.indexOf(second), 1);
    expect(await second.stop("SIGTERM")).toBe(0);
    expect(isGroupAlive(pid)).toBe(false);
    // A normal shutdown stops the keeper too, after the agents.
    expect(keeperPids(ws.stateDir)).toEqual([]);
  });

  it("stops the keeper it started when serve cannot listen, but not one that agents still use", async () => {
    const { ws, args } = await setup({ FLOOD_RATE: "100000" }, "");
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => busy.close(() => resolve())));
    const taken = `127.0.0.1:${(busy.address() as AddressInfo).port}`;
    const serve = (listen: string) =>
      promisify(execFile)(process.execPath, [CLI, "serve", ...args, "--listen", listen]).then(
        () => 0,
        (error: { code: number }) => error.code,
      );
    // A fresh state dir: the keeper started for this serve serves nothing and goes with it.
    expect(await serve(taken)).toBe(1);
    expect(keeperPids(ws.stateDir)).toEqual([]);

    // An agent left running by a killed daemon writes through its keeper: that one stays.
    const first = await start(args);
    const agent = (await first.client.deploy({ name: "a" })).agent;
    pids.add(agent?.pid ?? 0);
    const keeper = keeperPids(ws.stateDir);
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGKILL");
    expect(await serve(taken)).toBe(1);
    expect(keeperPids(ws.stateDir)).toEqual(keeper);
    // The next daemon that can listen adopts the agent and stops both at its shutdown.
    const next = await start(args);
    expect((await next.client.getStatus({ name: "a" })).agent?.stateReason).toBe("ADOPTED");
  });

  it("follows an agent's log through StreamLogs across many rotations with no gap or repeat", async () => {
    const { args } = await setup({ FLOOD_RATE: "1000000", FLOOD_SECONDS: "2" }, "log_keep = 2", [
      "--log-max-bytes",
      "64KiB",
    ]);
    const daemon = await start(args);
    const agent = (await daemon.client.deploy({ name: "a" })).agent;
    pids.add(agent?.pid ?? 0);
    const port = agent?.port ?? 0;
    const lines: string[] = [];
    let last = -1;
    const controller = new AbortController();
    // Once the agent's flood is over, its count of lines says when the stream has everything.
    const watching = setInterval(() => {
      void agentStats(port).then(
        (s) => {
          if (!s.flooding && last === s.lines - 1) controller.abort();
        },
        () => undefined,
      );
    }, 100);
    const stream = daemon.client.streamLogs(
      { name: "a", tailLines: 10, follow: true },
      { signal: controller.signal },
    );
    try {
      for await (const message of stream) {
        lines.push(...message.lines);
        last = Math.max(last, checkSequence(message.lines).last);
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    } finally {
      clearInterval(watching);
      controller.abort();
    }
    const total = (await agentStats(port)).lines;
    const check = checkSequence(lines);
    expect(check).toMatchObject({ last: total - 1, gaps: [], repeats: 0, other: [], markers: [] });
    // 2 MB through 64 KiB files: about thirty rotations while following.
    expect(check.lines).toBeGreaterThan(15_000);
  });

  it("refuses to start an agent whose log is a symbolic link, and never touches what it points to", async () => {
    const { ws, args, logPath } = await setup({ FLOOD_BYTES: "1000", TICK_MS: "100" }, "");
    const victim = path.join(ws.dir, "victim");
    await writeFile(victim, "precious\n");
    await mkdir(path.dirname(logPath), { recursive: true });
    await symlink(victim, logPath);
    const daemon = await start(args);
    const refused = await daemon.client.deploy({ name: "a" }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ reason: "AGENT_START_FAILED" });
    const status = (await daemon.client.getStatus({ name: "a" })).agent;
    expect(status).toMatchObject({ state: AgentState.FAILED, stateReason: "SPAWN_FAILED" });
    expect(status?.stateMessage).toContain(
      `${logPath} is a symbolic link, not a regular file: refusing to write through it`,
    );
    expect(daemon.stderr()).toContain("the agent could not be started");
    // StreamLogs does not show the file either.
    const lines: string[] = [];
    for await (const batch of daemon.client.streamLogs({ name: "a", tailLines: 10 })) {
      lines.push(...batch.lines);
    }
    expect(lines).toEqual([]);
    expect(await readFile(victim, "utf8")).toBe("precious\n");
  });
});
