import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { WatchEventType } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { listGroupMembers } from "../../src/platform/proc-info.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { AgentOwnership, SUPERVISOR_TOKEN_ENV } from "../../src/supervisor/agent-ownership.ts";
import { waitUntil } from "../platform/helpers.ts";
import { FAULT_AGENT, faultAgentToml } from "../supervisor/harness.ts";
import { type Daemon, startDaemon, workspace } from "./daemon.ts";

const daemons: Daemon[] = [];
const pids = new Set<number>();
let cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop("SIGTERM");
  // Anything still alive was orphaned by the test's scenario: kill it, then fail.
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  for (const c of cleanups.splice(0)) await c();
  cleanups = [];
  expect(left).toEqual([]);
});

async function setup(names: string[], options: { env?: Record<string, string> } = {}) {
  const ws = await workspace(
    Object.fromEntries(
      names.map((n) => [
        n,
        { file: "agent.toml", text: faultAgentToml(n, { env: options.env ?? {} }) },
      ]),
    ),
  );
  cleanups.push(ws.cleanup);
  const basePort = 24_000 + (process.pid % 40) * 50;
  const args = [
    "--agents-dir",
    ws.agentsDir,
    "--state-dir",
    ws.stateDir,
    "--base-port",
    String(basePort),
    "--health-check-interval",
    "0.2",
  ];
  return { ws, args, basePort };
}

async function start(args: string[]): Promise<Daemon> {
  const daemon = await startDaemon(args);
  daemons.push(daemon);
  return daemon;
}

describe("durability across daemon restarts", () => {
  it("adopts live agents after the daemon is killed, without duplicates or new ports", async () => {
    const { args } = await setup(["a", "b"]);
    const first = await start(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    const b = (await first.client.deploy({ name: "b" })).agent;
    pids.add(a?.pid ?? 0).add(b?.pid ?? 0);
    daemons.splice(daemons.indexOf(first), 1);
    expect(await first.stop("SIGKILL")).toBe("SIGKILL");
    expect(isGroupAlive(a?.pid ?? 0)).toBe(true);

    const second = await start(args);
    const listed = (await second.client.listAgents({})).agents;
    const byName = Object.fromEntries(listed.map((x) => [x.name, x]));
    expect(byName.a).toMatchObject({
      state: AgentState.RUNNING,
      stateReason: "ADOPTED",
      pid: a?.pid,
      port: a?.port,
    });
    expect(byName.b).toMatchObject({
      state: AgentState.RUNNING,
      stateReason: "ADOPTED",
      pid: b?.pid,
      port: b?.port,
    });
  });

  it("restarts an adopted agent that dies later, on its old port", async () => {
    const { args } = await setup(["a"]);
    const first = await start(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGKILL");
    const second = await start(args);
    process.kill(a?.pid ?? 0, "SIGKILL");
    // Event-driven: watch until a new process is running and healthy.
    for await (const event of second.client.watchHealth({ names: ["a"] })) {
      const agent = event.agent;
      if (agent?.pid) pids.add(agent.pid);
      if (
        agent &&
        agent.pid !== a?.pid &&
        agent.state === AgentState.RUNNING &&
        agent.health === HealthStatus.HEALTHY
      ) {
        expect(agent.port).toBe(a?.port);
        break;
      }
    }
  });

  it("stops what a dead agent left in its group before starting it again", async () => {
    const { args } = await setup(["a"], { env: { FAULT: "grandchild" } });
    const first = await start(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    const oldPid = a?.pid ?? 0;
    pids.add(oldPid);
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGKILL");
    // The leader dies while no daemon watches; its grandchild lives on in the old group.
    process.kill(oldPid, "SIGKILL");
    await waitUntil(
      () => listGroupMembers(oldPid).every((m) => m.pid !== oldPid),
      "the old leader is gone",
    );
    expect(isGroupAlive(oldPid)).toBe(true);

    const second = await start(args);
    // Listening is announced after the restore, which ends the old group first.
    expect(isGroupAlive(oldPid)).toBe(false);
    for await (const event of second.client.watchHealth({ names: ["a"] })) {
      if (event.agent?.pid) pids.add(event.agent.pid);
      if (
        event.agent?.state === AgentState.RUNNING &&
        event.agent.health === HealthStatus.HEALTHY
      ) {
        expect(event.agent.pid).not.toBe(oldPid);
        expect(event.agent.port).toBe(a?.port);
        break;
      }
    }
  });

  it("starts again, after a graceful shutdown, the agents that were deployed", async () => {
    const { args } = await setup(["a", "b"]);
    const first = await start(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    daemons.splice(daemons.indexOf(first), 1);
    expect(await first.stop("SIGTERM")).toBe(0);
    expect(isGroupAlive(a?.pid ?? 0)).toBe(false);
    const second = await start(args);
    for await (const event of second.client.watchHealth({ names: ["a"] })) {
      if (event.agent?.pid) pids.add(event.agent.pid);
      if (event.agent?.state === AgentState.RUNNING && event.agent.health === HealthStatus.HEALTHY)
        break;
    }
    expect((await second.client.getStatus({ name: "b" })).agent?.state).toBe(AgentState.DISCOVERED);
  });

  it("does not start at the next serve an agent whose Deploy was refused", async () => {
    const { ws, args } = await setup(["a", "b"], { env: { MARK_FILE: "@DIR@/marks" } });
    const first = await start([...args, "--max-agents", "1"]);
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    const refused = await first.client.deploy({ name: "b" }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ reason: "MAX_AGENTS_REACHED" });
    daemons.splice(daemons.indexOf(first), 1);
    expect(await first.stop("SIGTERM")).toBe(0);
    const saved = JSON.parse(await readFile(path.join(ws.stateDir, "state.json"), "utf8"));
    expect(saved.agents.b).toMatchObject({ desired: "stopped", pid: 0 });

    // With room for both, only the agent that was deployed comes back.
    const second = await start([...args, "--max-agents", "5"]);
    for await (const event of second.client.watchHealth({ names: ["a"] })) {
      if (event.agent?.pid) pids.add(event.agent.pid);
      if (event.agent?.state === AgentState.RUNNING && event.agent.health === HealthStatus.HEALTHY)
        break;
    }
    expect((await second.client.getStatus({ name: "b" })).agent?.state).toBe(AgentState.DISCOVERED);
    const marks = await readFile(path.join(ws.dir, "marks"), "utf8");
    expect(marks.trim().split("\n")).toHaveLength(2); // a's two starts, none of b
  });

  it("gives a watcher resuming from the previous run's revision a fresh snapshot", async () => {
    const { args } = await setup(["a"]);
    const first = await start(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    let seen = 0n;
    for await (const event of first.client.watchHealth({})) {
      seen = event.revision;
      if (event.type === WatchEventType.SNAPSHOT_COMPLETE) break;
    }
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGKILL");

    const second = await start(args);
    // The new run's changes (adoption, probes) must not pass for the ones after `seen`.
    await second.client.restart({ name: "a" }).then((r) => pids.add(r.agent?.pid ?? 0));
    const types: WatchEventType[] = [];
    for await (const event of second.client.watchHealth({ resumeAfterRevision: seen })) {
      types.push(event.type);
      expect(event.revision).toBeGreaterThan(seen);
      if (event.type === WatchEventType.SNAPSHOT_COMPLETE) break;
    }
    expect(types).toEqual([WatchEventType.SNAPSHOT, WatchEventType.SNAPSHOT_COMPLETE]);
  });

  it("exits 1 after a shutdown that had to kill an agent ignoring SIGTERM", async () => {
    const { args } = await setup(["a"], { env: { FAULT: "ignore-sigterm" } });
    const daemon = await start(args);
    const a = (await daemon.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    daemons.splice(daemons.indexOf(daemon), 1);
    expect(await daemon.stop("SIGTERM")).toBe(1);
    expect(isGroupAlive(a?.pid ?? 0)).toBe(false);
  });

  it("adopts an agent the killed daemon spawned but had not recorded yet", async () => {
    const { ws, args } = await setup(["a"]);
    const statePath = path.join(ws.stateDir, "state.json");
    const first = await start(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGKILL");
    // As if the kill had come between a restart's spawn and its save: the record still names
    // the previous process (gone), with the command it ran.
    const state = JSON.parse(await readFile(statePath, "utf8"));
    state.agents.a = { ...state.agents.a, pid: 0, startTimeTicks: undefined };
    await writeFile(statePath, JSON.stringify(state));

    const second = await start(args);
    const adopted = (await second.client.getStatus({ name: "a" })).agent;
    expect(adopted).toMatchObject({
      state: AgentState.RUNNING,
      stateReason: "ADOPTED",
      pid: a?.pid,
      port: a?.port,
    });
    // Its start time comes from /proc (ticks since boot), within clock-tick rounding.
    const started = (t: typeof adopted) => Number(t?.startTime?.seconds ?? 0n);
    expect(started(adopted)).toBeGreaterThan(0);
    expect(Math.abs(started(adopted) - started(a))).toBeLessThanOrEqual(1);
  });

  it("stops a second process of an agent and keeps the recorded one", async () => {
    const { ws, args, basePort } = await setup(["a"]);
    const first = await start(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGKILL");
    // A stray second copy carrying the agent's token (as a spawn of this state dir would).
    const { secret } = JSON.parse(await readFile(path.join(ws.stateDir, "state.json"), "utf8"));
    const stray = spawn(process.execPath, [FAULT_AGENT], {
      detached: true,
      stdio: "ignore",
      env: {
        ...process.env,
        PORT: String(basePort + 40),
        ATOLL_AGENT_NAME: "a",
        [SUPERVISOR_TOKEN_ENV]: new AgentOwnership(secret).tokenFor("a"),
      },
    });
    const strayPid = stray.pid ?? 0;
    pids.add(strayPid);
    await waitUntil(() => isGroupAlive(strayPid), "the stray copy runs");

    const second = await start(args);
    await waitUntil(() => !isGroupAlive(strayPid), "the stray copy is stopped");
    expect((await second.client.getStatus({ name: "a" })).agent).toMatchObject({
      state: AgentState.RUNNING,
      stateReason: "ADOPTED",
      pid: a?.pid,
    });
  });

  it("never adopts a recorded pid that now belongs to another process", async () => {
    const { ws, args } = await setup(["a"]);
    const statePath = path.join(ws.stateDir, "state.json");
    const first = await start(args);
    await first.client.listAgents({});
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGTERM");
    // Point the record at a live, unrelated process (this test runner) with a wrong start time.
    const state = JSON.parse(await readFile(statePath, "utf8"));
    state.agents.a = {
      desired: "running",
      port: 0,
      pid: process.pid,
      startTimeTicks: 1,
      startTimeMs: 0,
    };
    await writeFile(statePath, JSON.stringify(state));
    const second = await start(args);
    for await (const event of second.client.watchHealth({ names: ["a"] })) {
      if (event.agent?.pid) pids.add(event.agent.pid);
      if (event.agent?.state === AgentState.RUNNING) {
        expect(event.agent.pid).not.toBe(process.pid);
        expect(event.agent.stateReason).not.toBe("ADOPTED");
        break;
      }
    }
  });

  it("starts with a warning, not a crash, when the state file is corrupt", async () => {
    const { ws, args } = await setup(["a"]);
    const first = await start(args);
    await first.client.listAgents({});
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGTERM");
    await writeFile(path.join(ws.stateDir, "state.json"), '{"version": 1, "agents": {"a": ');
    await writeFile(path.join(ws.stateDir, "state.json.bak"), "not json either");
    const second = await start(args);
    expect((await second.client.listAgents({})).agents.map((x) => x.name)).toEqual(["a"]);
    expect(second.stderr()).toMatch(/state file/);
  });

  describe.skipIf(!canMountTmpfs)("with the state dir on a disk that fails writes", () => {
    it.each([
      ["full", fillDisk],
      ["read-only", remountReadOnly],
    ])("keeps agents and catches up the state file once a %s disk recovers", async (_, fail) => {
      const { ws, args } = await setup(["a", "b"]);
      const statePath = path.join(ws.stateDir, "state.json");
      const recover = await stateDirOnTmpfs(ws.stateDir, ws.dir);
      const first = await start(args);
      const a = (await first.client.deploy({ name: "a" })).agent;
      pids.add(a?.pid ?? 0);
      await waitUntil(() => savedAgents(statePath).a?.pid === a?.pid, "a is saved");

      const repair = await fail(ws.stateDir);
      const b = (await first.client.deploy({ name: "b" })).agent;
      pids.add(b?.pid ?? 0);
      await waitUntil(
        () => first.stderr().includes("cannot save state file"),
        "the failed save is logged",
      );
      // The last good file is intact, the daemon serves, both agents run.
      expect(savedAgents(statePath).a?.pid).toBe(a?.pid);
      expect(savedAgents(statePath).b?.pid ?? 0).toBe(0);
      expect((await first.client.getStatus({ name: "b" })).agent?.state).toBe(AgentState.RUNNING);

      await repair();
      // Nothing else changes: the retry alone brings the file up to date.
      await waitUntil(() => savedAgents(statePath).b?.pid === b?.pid, "b is saved", 20_000);
      daemons.splice(daemons.indexOf(first), 1);
      await first.stop("SIGKILL");
      const second = await start(args);
      const listed = (await second.client.listAgents({})).agents;
      expect(listed.map((x) => [x.name, x.pid, x.stateReason])).toEqual([
        ["a", a?.pid, "ADOPTED"],
        ["b", b?.pid, "ADOPTED"],
      ]);
      daemons.splice(daemons.indexOf(second), 1);
      expect(await second.stop("SIGTERM")).toBe(0);
      await recover();
    });
  });
});

/** Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, as on the CI machine). */
const canMountTmpfs = (() => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "atoll-mount-check-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" });
    execFileSync("umount", [dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();

/**
 * Mounts a small tmpfs as `stateDir`, with `logs/` and `keeper/` (the output keeper's FIFOs and
 * socket) links to a normal directory (agents keep writing their output; only the state file is
 * on the failing disk). Returns the unmount.
 */
async function stateDirOnTmpfs(stateDir: string, root: string): Promise<() => Promise<void>> {
  await mkdir(stateDir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", stateDir]);
  for (const name of ["logs", "keeper"]) {
    await mkdir(path.join(root, name));
    await symlink(path.join(root, name), path.join(stateDir, name));
  }
  const unmount = async () => {
    try {
      execFileSync("umount", [stateDir], { stdio: "ignore" });
    } catch {
      // Already unmounted.
    }
  };
  cleanups.unshift(unmount); // before the workspace is removed, even when the test fails
  return unmount;
}

/** Fills the disk with a file; the repair removes it. */
async function fillDisk(stateDir: string): Promise<() => Promise<void>> {
  const filler = path.join(stateDir, "filler");
  await writeFile(filler, Buffer.alloc(1024 * 1024)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOSPC") throw error;
  });
  return () => rm(filler, { force: true });
}

/** Remounts the disk read-only (even root cannot write); the repair remounts it read-write. */
async function remountReadOnly(stateDir: string): Promise<() => Promise<void>> {
  execFileSync("mount", ["-o", "remount,ro", stateDir]);
  return async () => {
    execFileSync("mount", ["-o", "remount,rw", stateDir]);
  };
}

/** The agents recorded in a state file ({} when unreadable). */
function savedAgents(statePath: string): Record<string, { pid?: number }> {
  try {
    return JSON.parse(readFileSync(statePath, "utf8")).agents ?? {};
  } catch {
    return {};
  }
}
