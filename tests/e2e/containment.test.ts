/**
 * Containment of an agent's whole tree (issue 13; docs/platform.md, "Containment"): a grandchild
 * that left the agent's process group with `setsid` (reparented to pid 1 once its parent exits)
 * is stopped by Undeploy, Restart and a shutdown like any other member, STOPPED is reported only
 * once it is gone, and a daemon started after a crash never takes it for the agent.
 */
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { isProcessAlive } from "../../src/platform/proc-info.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { waitForLogLine, waitUntil } from "../platform/helpers.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { type Daemon, startDaemon, workspace } from "./daemon.ts";

const daemons: Daemon[] = [];
const pids = new Set<number>();
/** setsid grandchildren: not in any group the test knows, ended by pid. */
const escaped = new Set<number>();
const stateDirs = new Set<string>();
let cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop("SIGTERM");
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  const strays = [...escaped].filter(isProcessAlive);
  for (const pid of strays) process.kill(pid, "SIGKILL");
  pids.clear();
  escaped.clear();
  // Every cgroup a daemon made is removed by its graceful stop.
  const cgroups: string[] = [];
  for (const stateDir of stateDirs) {
    const base = recordedCgroup(stateDir);
    if (base !== undefined && existsSync(base)) cgroups.push(base);
  }
  stateDirs.clear();
  for (const c of cleanups.splice(0)) await c();
  cleanups = [];
  expect(left).toEqual([]);
  expect(strays).toEqual([]);
  expect(cgroups).toEqual([]);
});

/** The cgroup base a daemon recorded in state.json, if any. */
function recordedCgroup(stateDir: string): string | undefined {
  try {
    return JSON.parse(readFileSync(path.join(stateDir, "state.json"), "utf8")).cgroup;
  } catch {
    return undefined;
  }
}

const basePort = 23_000 + (process.pid % 40) * 25;

async function setup() {
  const ws = await workspace({
    a: { file: "agent.toml", text: faultAgentToml("a", { env: { FAULT: "setsid-grandchild" } }) },
  });
  cleanups.push(ws.cleanup);
  stateDirs.add(ws.stateDir);
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
  return { ws, args, logPath: path.join(ws.stateDir, "logs", "a.log") };
}

async function start(args: string[]): Promise<Daemon> {
  const daemon = await startDaemon(args);
  daemons.push(daemon);
  return daemon;
}

/** Deploys `a` and returns it with the pid of its setsid grandchild (once it left the group). */
async function deployWithGrandchild(daemon: Daemon, logPath: string, after = 0) {
  const agent = (await daemon.client.deploy({ name: "a" })).agent;
  pids.add(agent?.pid ?? 0);
  const grandchild = Number(
    (await waitForLogLine(logPath, new RegExp(`^ESCAPED (?!${after}$)(\\d+)$`)))[1],
  );
  escaped.add(grandchild);
  await waitUntil(() => processGroup(grandchild) === grandchild, "the grandchild called setsid");
  return { agent, grandchild };
}

function processGroup(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
  } catch {
    return undefined;
  }
}

describe("containment of an agent's whole tree", () => {
  it("reports STOPPED on Undeploy only once a grandchild that left the group with setsid is gone", async () => {
    const { args, logPath } = await setup();
    const daemon = await start(args);
    const { grandchild } = await deployWithGrandchild(daemon, logPath);
    const stopped = (await daemon.client.undeploy({ name: "a" })).agent;
    expect(stopped?.state).toBe(AgentState.STOPPED);
    expect(isProcessAlive(grandchild)).toBe(false);
  });

  it("stops the grandchild on Restart before the new process starts", async () => {
    const { args, logPath } = await setup();
    const daemon = await start(args);
    const { agent, grandchild } = await deployWithGrandchild(daemon, logPath);
    const restarted = (await daemon.client.restart({ name: "a" })).agent;
    pids.add(restarted?.pid ?? 0);
    expect(restarted?.pid).not.toBe(agent?.pid);
    expect(isProcessAlive(grandchild)).toBe(false);
  });

  it("stops the grandchild at a graceful shutdown, so that nothing of the agent outlives the daemon", async () => {
    const { args, logPath } = await setup();
    const daemon = await start(args);
    const { grandchild } = await deployWithGrandchild(daemon, logPath);
    daemons.splice(daemons.indexOf(daemon), 1);
    expect(await daemon.stop("SIGTERM")).toBe(0);
    expect(isProcessAlive(grandchild)).toBe(false);
  });

  it("never takes for the agent a grandchild a dead agent left: the next serve stops it and starts the agent again", async () => {
    const { ws, args, logPath } = await setup();
    const first = await start(args);
    const { agent, grandchild } = await deployWithGrandchild(first, logPath);
    daemons.splice(daemons.indexOf(first), 1);
    await first.stop("SIGKILL");
    // The agent dies while no daemon watches; its grandchild lives on, reparented.
    process.kill(agent?.pid ?? 0, "SIGKILL");
    await waitUntil(() => !isProcessAlive(agent?.pid ?? 0), "the agent is gone");
    expect(isProcessAlive(grandchild)).toBe(true);

    const second = await start(args);
    // Listening is announced after the restore, which stopped the leftover first.
    expect(isProcessAlive(grandchild)).toBe(false);
    for await (const event of second.client.watchHealth({ names: ["a"] })) {
      if (event.agent?.pid) pids.add(event.agent.pid);
      if (
        event.agent?.state === AgentState.RUNNING &&
        event.agent.health === HealthStatus.HEALTHY
      ) {
        expect(event.agent.stateReason).not.toBe("ADOPTED");
        expect([agent?.pid, grandchild]).not.toContain(event.agent.pid);
        break;
      }
    }
    const state = JSON.parse(await readFile(path.join(ws.stateDir, "state.json"), "utf8"));
    expect(state.agents.a.pid).not.toBe(grandchild);
    // The new process's own grandchild, ended with it by the afterEach stop.
    escaped.add(
      Number((await waitForLogLine(logPath, new RegExp(`^ESCAPED (?!${grandchild}$)(\\d+)$`)))[1]),
    );
  });
});
