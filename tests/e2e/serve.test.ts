import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { credentials, Metadata, status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { DAEMON_NODE_FLAGS } from "../../bench/tools/atoll.ts";
import { AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  DeploymentService,
  WatchEventType,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { createClient, RpcError } from "../../src/rpc/grpc-client.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { CLI, type Daemon, REPO, startDaemon, workspace } from "./daemon.ts";

const run = promisify(execFile);
const daemons: Daemon[] = [];
const pids = new Set<number>();
const dirs: string[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) expect(await d.stop("SIGTERM")).toBe(0);
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  expect(left).toEqual([]);
});

const basePort = (slot: number) => 27_000 + (process.pid % 30) * 60 + slot * 20;

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-serve-"));
  dirs.push(dir);
  return dir;
}

describe("atoll-deploy serve", () => {
  it("runs with the same Node flags whether started by npm start, the bin or the benchmark", async () => {
    const pkg = JSON.parse(await readFile(path.join(REPO, "package.json"), "utf8"));
    const shebang = (await readFile(CLI, "utf8")).split("\n")[0];
    const flags = DAEMON_NODE_FLAGS.join(" ");
    expect(pkg.scripts.start).toBe(`node ${flags} bin/atoll-deploy.js serve`);
    expect(shebang).toBe(`#!/usr/bin/env -S node ${flags}`);
    // The shebang really runs: the bin executed directly, as systemd and npx do.
    const { stdout } = await run(CLI, ["--version"], {
      env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` },
    });
    expect(stdout).toMatch(/\d+\.\d+\.\d+/);
  });

  it("serves the bundled agents, which answer prompts on their leased ports", async () => {
    const dir = await tempDir();
    const daemon = await startDaemon([
      "--agents-dir",
      path.join(REPO, "atoll_agents"),
      "--state-dir",
      dir,
      "--base-port",
      String(basePort(0)),
    ]);
    daemons.push(daemon);
    for (const name of ["greeter", "summarizer"]) {
      const agent = (await daemon.client.deploy({ name })).agent;
      pids.add(agent?.pid ?? 0);
      expect(agent).toMatchObject({ state: AgentState.RUNNING, health: HealthStatus.HEALTHY });
      const response = await fetch(`http://127.0.0.1:${agent?.port}/prompt`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt: "hello" }),
      });
      expect(response.status).toBe(200);
      const body = (await response.json()) as { response: string; model: string };
      expect(body.model).toBe("echo");
      expect(body.response).toContain("hello");
    }
    const ports = (await daemon.client.listAgents({ states: [AgentState.RUNNING] })).agents.map(
      (a) => a.port,
    );
    expect(ports).toEqual([basePort(0), basePort(0) + 1]);
  });

  it("shows an added, changed and removed definition in ListAgents while running", async () => {
    const ws = await workspace({ a: { file: "agent.toml", text: faultAgentToml("a") } });
    dirs.push(ws.dir);
    const daemon = await startDaemon([
      "--agents-dir",
      ws.agentsDir,
      "--state-dir",
      ws.stateDir,
      "--base-port",
      String(basePort(1)),
    ]);
    daemons.push(daemon);
    const events = daemon.client.watchHealth({})[Symbol.asyncIterator]();
    const nextMatching = async (predicate: (name: string, type: number) => boolean) => {
      for (;;) {
        const next = await events.next();
        if (next.done) throw new Error("watch ended");
        if (predicate(next.value.agent?.name ?? "", next.value.type)) return next.value;
      }
    };
    await nextMatching((_, type) => type === WatchEventType.SNAPSHOT_COMPLETE);
    await mkdir(path.join(ws.agentsDir, "b"));
    await writeFile(path.join(ws.agentsDir, "b", "agent.toml"), faultAgentToml("b"));
    await nextMatching((name) => name === "b");
    await writeFile(path.join(ws.agentsDir, "b", "agent.toml"), "[deployment]\nport = 'x'\n");
    const invalid = await nextMatching((name) => name === "b");
    expect(invalid.agent?.state).toBe(AgentState.INVALID);
    expect(invalid.agent?.stateMessage).toMatch(/deployment\.port/);
    await rm(path.join(ws.agentsDir, "b"), { recursive: true });
    const removed = await nextMatching(
      (name, type) => name === "b" && type === WatchEventType.REMOVED,
    );
    expect(removed.type).toBe(WatchEventType.REMOVED);
    await events.return?.();
    expect((await daemon.client.listAgents({})).agents.map((a) => a.name)).toEqual(["a"]);
  });

  it("requires the bearer token when auth is on, and serves a 0600 Unix socket", async () => {
    const dir = await tempDir();
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, "s3cret-token\n");
    const socket = path.join(dir, "atoll.sock");
    const daemon = await startDaemon([
      "--agents-dir",
      path.join(REPO, "atoll_agents"),
      "--state-dir",
      dir,
      "--listen",
      `unix:${socket}`,
      "--auth-token-file",
      tokenFile,
    ]);
    daemons.push(daemon);
    expect((await stat(socket)).mode & 0o777).toBe(0o600);
    const client = createClient(DeploymentService, `unix:${socket}`, credentials.createInsecure());
    try {
      const error = await client.listAgents({}).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RpcError);
      expect(error).toMatchObject({ code: status.UNAUTHENTICATED, reason: "UNAUTHENTICATED" });
      const metadata = new Metadata();
      metadata.set("authorization", "Bearer s3cret-token");
      const listed = await client.listAgents({}, { metadata });
      expect(listed.agents.length).toBe(3);
    } finally {
      client.close();
    }
  });

  it("refuses a second server on a busy address with a one-line error", async () => {
    const dir = await tempDir();
    const args = ["--agents-dir", path.join(REPO, "atoll_agents"), "--state-dir", dir];
    const daemon = await startDaemon(args);
    daemons.push(daemon);
    const second = await run(process.execPath, [
      CLI,
      "serve",
      ...args,
      "--listen",
      daemon.address,
    ]).catch((e: { code: number; stderr: string }) => e);
    expect(second).toMatchObject({ code: 1 });
    // The daemon's JSON log lines come first; the error is one plain line at the end.
    const last = (second as { stderr: string }).stderr.trim().split("\n").at(-1) ?? "";
    expect(last).toMatch(/^atoll-deploy serve: cannot listen on /);
    expect(last).toContain(daemon.address);
  });

  it("exits 2 with a one-line error for a missing agents directory or a malformed config", async () => {
    const dir = await tempDir();
    const missing = await run(process.execPath, [
      CLI,
      "serve",
      "--agents-dir",
      path.join(dir, "nope"),
      "--state-dir",
      dir,
    ]).catch((e: { code: number; stderr: string }) => e);
    expect(missing).toMatchObject({ code: 2 });
    expect((missing as { stderr: string }).stderr).toMatch(/nope/);
    const config = path.join(dir, "config.json");
    await writeFile(config, '{"deployment": {"base_port": "8100"}}');
    const bad = await run(process.execPath, [
      CLI,
      "serve",
      "--config",
      config,
      "--state-dir",
      dir,
    ]).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2 });
    expect((bad as { stderr: string }).stderr).toMatch(/base_port/);
  });

  it("is callable by buf curl through server reflection, health included", async () => {
    const dir = await tempDir();
    const daemon = await startDaemon([
      "--agents-dir",
      path.join(REPO, "atoll_agents"),
      "--state-dir",
      dir,
    ]);
    daemons.push(daemon);
    const buf = path.join(REPO, "node_modules", ".bin", "buf");
    const curl = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"];
    const base = `http://${daemon.address}`;
    const methods = (await run(buf, [...curl, "--list-methods", base])).stdout;
    expect(methods).toContain("atoll.deployment.v1.DeploymentService/WatchHealth");
    expect(methods).toContain("grpc.health.v1.Health/Check");
    const health = await run(buf, [...curl, `${base}/grpc.health.v1.Health/Check`]);
    expect(JSON.parse(health.stdout)).toEqual({ status: "SERVING" });
    const status = await run(buf, [
      ...curl,
      "-d",
      '{"name":"greeter"}',
      `${base}/atoll.deployment.v1.DeploymentService/GetStatus`,
    ]);
    expect(JSON.parse(status.stdout).agent).toMatchObject({
      name: "greeter",
      state: "AGENT_STATE_DISCOVERED",
    });
  });
});
