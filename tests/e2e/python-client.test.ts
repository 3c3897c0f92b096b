import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { type Daemon, REPO, startDaemon } from "./daemon.ts";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
let daemon: Daemon | undefined;
/** Every daemon a test started, so that none outlives a failing test. */
const started: Daemon[] = [];
/** Work a test started that may still start a daemon when the test fails early. */
let pending: Promise<unknown> | undefined;
const cleanup: string[] = [];

afterEach(async () => {
  await pending?.catch(() => undefined);
  pending = undefined;
  const main = daemon;
  daemon = undefined;
  // A daemon already stopped (SIGKILLed by the test) resolves with its earlier exit; one still
  // running stops its agents and its output keeper.
  for (const d of started.splice(0)) if (d !== main) await d.stop("SIGTERM");
  expect(await main?.stop("SIGTERM")).toBe(0);
  for (const dir of cleanup.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("a Python grpcio client", () => {
  it("calls every RPC, decodes ErrorInfo, watches through a crash, checks health and reflects", async () => {
    // .ci/run installs python3-grpcio, protoc and grpc_python_plugin; without them this test cannot run.
    expect(existsSync(PYTHON) && existsSync("/usr/bin/protoc")).toBe(true);
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-py-"));
    cleanup.push(dir);
    daemon = await startDaemon([
      "--agents-dir",
      path.join(REPO, "atoll_agents"),
      "--state-dir",
      path.join(dir, "state"),
      "--base-port",
      String(26_000 + (process.pid % 40) * 20),
    ]);
    const { stdout } = await run(PYTHON, [
      path.join(REPO, "tests/python/deployment_client.py"),
      "--server",
      daemon.address,
      "--agent",
      "greeter",
      "--repo",
      REPO,
      "--out",
      path.join(dir, "stubs"),
    ]);
    const result = JSON.parse(stdout);
    expect(result.listed.map((a: { name: string }) => a.name)).toEqual([
      "greeter",
      "ollama-assistant",
      "summarizer",
    ]);
    expect(result.listed[0].state).toBe("AGENT_STATE_DISCOVERED");
    expect(result.deployed).toMatchObject({
      name: "greeter",
      state: "AGENT_STATE_RUNNING",
      health: "HEALTH_STATUS_HEALTHY",
    });
    expect(result.deployed.port).toBeGreaterThan(0);
    expect(result.status_state).toBe("AGENT_STATE_RUNNING");
    expect(result.unknown).toMatchObject({
      code: "NOT_FOUND",
      reason: "AGENT_NOT_FOUND",
      domain: "atoll.deploy",
      metadata: { agent: "no-such-agent" },
    });
    expect(result.hostile).toMatchObject({
      code: "INVALID_ARGUMENT",
      reason: "INVALID_AGENT_NAME",
    });
    expect(result.restarted).toEqual({
      state: "AGENT_STATE_RUNNING",
      new_pid: true,
      port: result.deployed.port,
    });
    expect(result.log_lines).toBeGreaterThan(0);
    expect(result.watch).toMatchObject({ snapshot: 1, complete: true, revisions_increase: true });
    // Killed: it leaves RUNNING, and auto-restart brings it back on its own.
    expect(result.watch.states[0][0]).toBe("AGENT_STATE_RUNNING");
    expect(result.watch.states.at(-1)[1]).toBe("AGENT_STATE_RUNNING");
    expect(result.undeployed).toEqual({ state: "AGENT_STATE_STOPPED", port: 0 });
    expect(result.packages).toMatchObject({
      outcome: "INSTALL_OUTCOME_INSTALLED",
      name: "py-installed",
      source: "AGENT_SOURCE_PACKAGE",
      sha256_matches: true,
      again: "INSTALL_OUTCOME_ALREADY_INSTALLED",
      hostile: { code: "INVALID_ARGUMENT", reason: "PACKAGE_INVALID" },
      removed: "AGENT_STATE_DISCOVERED",
    });
    expect(result.health).toEqual(["SERVING", "SERVING"]);
    expect(result.reflection.services).toEqual([
      "atoll.deployment.v1.DeploymentService",
      "grpc.health.v1.Health",
    ]);
    expect(result.reflection.methods).toEqual([
      "Deploy",
      "Undeploy",
      "Restart",
      "GetStatus",
      "ListAgents",
      "StreamLogs",
      "WatchHealth",
      "InstallAgent",
      "RemoveAgent",
    ]);
    expect(isGroupAlive(result.deployed.pid)).toBe(false);
  });

  it("holds a watch through a server restart and resumes it with a fresh snapshot", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-py-"));
    cleanup.push(dir);
    const port = await freePort();
    const args = [
      "--listen",
      `127.0.0.1:${port}`,
      "--agents-dir",
      path.join(REPO, "atoll_agents"),
      "--state-dir",
      path.join(dir, "state"),
    ];
    const first = await startDaemon(args);
    started.push(first);
    const python = spawn(PYTHON, [
      path.join(REPO, "tests/python/deployment_client.py"),
      "--server",
      first.address,
      "--repo",
      REPO,
      "--out",
      path.join(dir, "stubs"),
      "--watch-restart",
    ]);
    const exited = once(python, "exit");
    const lines = createInterface({ input: python.stdout });
    const output: string[] = [];
    let restarted: Promise<void> | undefined;
    lines.on("line", (line) => {
      output.push(line);
      if (restarted === undefined && line.includes('"ready"')) {
        // The watcher is in its stream: kill the server under it and start a new one.
        restarted = first.stop("SIGKILL").then(async () => {
          daemon = await startDaemon(args);
        });
        pending = restarted;
      }
    });
    expect((await exited)[0]).toBe(0);
    await restarted;
    const ready = JSON.parse(output[0] ?? "{}");
    const result = JSON.parse(output.at(-1) ?? "{}");
    expect(result.errors).toEqual(["UNAVAILABLE"]);
    expect(result.resumed_after).toBeGreaterThanOrEqual(ready.ready);
    expect(result.after_restart.at(-1)).toBe("WATCH_EVENT_TYPE_SNAPSHOT_COMPLETE");
    expect(result.after_restart.slice(0, -1)).toEqual([
      "WATCH_EVENT_TYPE_SNAPSHOT",
      "WATCH_EVENT_TYPE_SNAPSHOT",
      "WATCH_EVENT_TYPE_SNAPSHOT",
    ]);
    expect(result.revision_after).toBeGreaterThan(result.resumed_after);
  });
});

/** A port nothing listens on right now (the kernel's pick, released at once). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}
