/**
 * `/metrics` of the real daemon, parsed by the Prometheus project's own parser, across an agent
 * crash with its automatic restart and a manual Restart; and the Connect endpoints of the real
 * daemon with and without its token.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { WatchEventType } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { type MetricFamily, parsePrometheusText, samples, value } from "../http/prometheus.ts";
import { type ConnectErrorJson, connectErrorInfo } from "../http/wire.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { CLI, type Daemon, startDaemon, workspace } from "./daemon.ts";

const daemons: Daemon[] = [];
const cleanups: (() => Promise<void>)[] = [];
const pids = new Set<number>();

afterEach(async () => {
  for (const daemon of daemons.splice(0)) expect(await daemon.stop("SIGTERM")).toBe(0);
  for (const cleanup of cleanups.splice(0)) await cleanup();
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  expect(left).toEqual([]);
});

const basePort = (slot: number) => 30_300 + (process.pid % 30) * 40 + slot * 20;

async function serve(slot: number, extra: string[] = []) {
  const ws = await workspace({
    worker: { file: "agent.toml", text: faultAgentToml("worker") },
    idle: { file: "agent.toml", text: faultAgentToml("idle") },
  });
  cleanups.push(ws.cleanup);
  const daemon = await startDaemon([
    "--agents-dir",
    ws.agentsDir,
    "--state-dir",
    ws.stateDir,
    "--host",
    "127.0.0.1",
    "--base-port",
    String(basePort(slot)),
    ...extra,
  ]);
  daemons.push(daemon);
  return { daemon, url: await daemon.httpUrl };
}

async function scrape(url: string, headers: Record<string, string> = {}): Promise<MetricFamily[]> {
  const response = await fetch(`${url}/metrics`, { headers });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await response.text());
}

/** Scrapes until `ready` holds (memory and probe figures have no event of their own). */
async function scrapeUntil(url: string, ready: (families: MetricFamily[]) => boolean) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const families = await scrape(url);
    if (ready(families) || Date.now() > deadline) return families;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const state = (families: MetricFamily[], agent: string) =>
  samples(families, "atoll_agent_state", { agent }).find((s) => s.value === 1)?.labels.state;

describe("/metrics of the daemon", () => {
  it("follows an agent through a crash, its automatic restart and a manual restart", async () => {
    const { daemon, url } = await serve(0);
    let families = await scrape(url);
    expect(state(families, "worker")).toBe("discovered");
    expect(value(families, "atoll_agent_restarts_total", { agent: "worker" })).toBe(0);

    const first = (await daemon.client.deploy({ name: "worker" })).agent;
    pids.add(first?.pid ?? 0);
    families = await scrapeUntil(
      url,
      (f) => value(f, "atoll_agent_memory_bytes", { agent: "worker" }) > 0,
    );
    expect(state(families, "worker")).toBe("running");
    expect(value(families, "atoll_agent_healthy", { agent: "worker" })).toBe(1);
    expect(value(families, "atoll_agent_memory_bytes", { agent: "worker" })).toBeGreaterThan(
      1_000_000,
    );
    expect(
      value(families, "atoll_health_probe_duration_seconds_count", { agent: "worker" }),
    ).toBeGreaterThan(0);
    const firstStart = value(families, "atoll_agent_start_time_seconds", { agent: "worker" });
    expect(Math.abs(firstStart * 1000 - Date.now())).toBeLessThan(60_000);

    // A crash: the supervisor restarts the agent by itself.
    const events = daemon.client.watchHealth({ names: ["worker"] })[Symbol.asyncIterator]();
    const runningAgain = (async () => {
      for (;;) {
        const next = await events.next();
        if (next.done === true) throw new Error("watch ended");
        const agent = next.value.agent;
        if (
          next.value.type === WatchEventType.CHANGE &&
          agent?.state === AgentState.RUNNING &&
          agent.pid !== first?.pid
        ) {
          return agent;
        }
      }
    })();
    process.kill(first?.pid ?? 0, "SIGKILL");
    const second = await runningAgain;
    await events.return?.();
    pids.add(second.pid);
    families = await scrape(url);
    expect(value(families, "atoll_agent_restarts_total", { agent: "worker" })).toBe(1);
    expect(state(families, "worker")).toBe("running");
    expect(
      value(families, "atoll_agent_start_time_seconds", { agent: "worker" }),
    ).toBeGreaterThanOrEqual(firstStart);

    // A manual Restart is no automatic restart.
    pids.add((await daemon.client.restart({ name: "worker" })).agent?.pid ?? 0);
    families = await scrape(url);
    expect(value(families, "atoll_agent_restarts_total", { agent: "worker" })).toBe(1);
    expect(value(families, "atoll_agent_restarts_total", { agent: "idle" })).toBe(0);
    expect(state(families, "idle")).toBe("discovered");

    const handled = (method: string, code: string) =>
      samples(families, "grpc_server_handled_total", {
        grpc_service: "atoll.deployment.v1.DeploymentService",
        grpc_method: method,
        grpc_code: code,
      })[0]?.value ?? 0;
    expect(handled("Deploy", "OK")).toBe(1);
    expect(handled("Restart", "OK")).toBe(1);
    expect(handled("WatchHealth", "Canceled")).toBe(1);
    expect(value(families, "atoll_watch_streams")).toBe(0);
    expect(samples(families, "process_resident_memory_bytes")).toHaveLength(1);
    expect(families.some((f) => f.name.startsWith("nodejs_"))).toBe(true);
  });

  it("serves the Connect API and /metrics only with the token when auth is on", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-obs-token-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, "metrics-s3cret\n");
    const { url } = await serve(1, ["--auth-token-file", tokenFile]);
    const call = (headers: Record<string, string>) =>
      fetch(`${url}/atoll.deployment.v1.DeploymentService/ListAgents`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: "{}",
      });
    const refused = await call({});
    expect(refused.status).toBe(401);
    expect(connectErrorInfo((await refused.json()) as ConnectErrorJson)?.reason).toBe(
      "UNAUTHENTICATED",
    );
    const allowed = await call({ authorization: "Bearer metrics-s3cret" });
    expect(allowed.status).toBe(200);
    expect(((await allowed.json()) as { agents: unknown[] }).agents).toHaveLength(2);
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    const families = await scrape(url, { authorization: "Bearer metrics-s3cret" });
    expect(
      value(families, "grpc_server_handled_total", {
        grpc_service: "atoll.deployment.v1.DeploymentService",
        grpc_method: "ListAgents",
        grpc_code: "Unauthenticated",
      }),
    ).toBe(1);
  });

  it("exits 1 with one line when http_listen is busy, leaving nothing running", async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => busy.close(() => resolve())));
    const { port } = busy.address() as AddressInfo;
    const ws = await workspace({ idle: { file: "agent.toml", text: faultAgentToml("idle") } });
    cleanups.push(ws.cleanup);
    const result = await promisify(execFile)(process.execPath, [
      CLI,
      "serve",
      "--agents-dir",
      ws.agentsDir,
      "--state-dir",
      ws.stateDir,
      "--listen",
      "127.0.0.1:0",
      "--http-listen",
      `127.0.0.1:${port}`,
    ]).catch((error: { code: number; stderr: string }) => error);
    expect(result).toMatchObject({ code: 1 });
    const last = (result as { stderr: string }).stderr.trim().split("\n").at(-1);
    expect(last).toMatch(
      new RegExp(
        `^atoll-deploy serve: cannot listen on 127\\.0\\.0\\.1:${port} \\(http_listen\\): .*EADDRINUSE`,
      ),
    );
  });

  it("opens no HTTP socket with http_listen off", async () => {
    const ws = await workspace({ idle: { file: "agent.toml", text: faultAgentToml("idle") } });
    cleanups.push(ws.cleanup);
    const daemon = await startDaemon([
      "--agents-dir",
      ws.agentsDir,
      "--state-dir",
      ws.stateDir,
      "--http-listen",
      "off",
    ]);
    expect(await daemon.stop()).toBe(0);
    // No "dashboard on" line was ever printed, and the log names no HTTP address.
    await expect(daemon.httpUrl).rejects.toThrow(/before its HTTP listener listened/);
    expect(daemon.stderr()).toContain('"msg":"listening"');
    expect(daemon.stderr()).not.toContain('"http":');
  });
});
