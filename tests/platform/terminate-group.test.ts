import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import {
  isProcessAlive,
  readProcessGroup,
  readProcessStartTime,
} from "../../src/platform/proc-info.ts";
import { processTree } from "../../src/platform/process-tree.ts";
import { type SpawnedAgent, spawnAgent } from "../../src/platform/spawn-agent.ts";
import { isGroupAlive, terminateGroup, terminateTree } from "../../src/platform/terminate-group.ts";
import { fixture, ProcessTracker, TempDirs, waitForLogLine, waitUntil } from "./helpers.ts";

const dirs = new TempDirs();
const tracker = new ProcessTracker();

afterEach(async () => {
  const leaked = tracker.leaked();
  await dirs.cleanup();
  expect(leaked).toEqual([]);
});

/** Starts group-leader.mjs with `args`; resolves once leader and grandchild are ready. */
async function startGroup(
  ...args: string[]
): Promise<{ agent: SpawnedAgent; grandchild: number | undefined }> {
  const dir = await dirs.make();
  const logPath = join(dir, "group.log");
  const agent = await spawnAgent({
    argv: [process.execPath, fixture("group-leader.mjs"), ...args],
    cwd: dir,
    env: {},
    output: { file: logPath },
  });
  tracker.track(agent.pid);
  const match = await waitForLogLine(logPath, /^ready leader=(\d+) grandchild=(\d+|none)$/);
  const grandchild = match[2] === "none" ? undefined : Number(match[2]);
  if (grandchild !== undefined) tracker.track(grandchild);
  return { agent, grandchild };
}

describe("terminateGroup", () => {
  it("stops a group that honours SIGTERM without SIGKILL, grandchild included", async () => {
    const { agent, grandchild } = await startGroup("--grandchild=exit");
    expect(isGroupAlive(agent.pgid)).toBe(true);
    const result = await terminateGroup(agent.pgid, {
      stopTimeoutMs: 10_000,
      exited: agent.exited,
    });
    expect(result).toEqual({ killed: false });
    expect(isGroupAlive(agent.pgid)).toBe(false);
    expect(isProcessAlive(grandchild ?? 0)).toBe(false);
    expect(await agent.exited).toMatchObject({ code: 0 });
  });

  it("kills a leader and grandchild that ignore SIGTERM once the grace is over", async () => {
    const { agent, grandchild } = await startGroup("--ignore-term", "--grandchild=ignore");
    const result = await terminateGroup(agent.pgid, { stopTimeoutMs: 300, exited: agent.exited });
    expect(result).toEqual({ killed: true });
    expect(isProcessAlive(agent.pid)).toBe(false);
    expect(isProcessAlive(grandchild ?? 0)).toBe(false);
    expect(await agent.exited).toMatchObject({ code: null, signal: "SIGKILL" });
  });

  it("waits for a grandchild that outlives its leader and kills it", async () => {
    const { agent, grandchild } = await startGroup("--grandchild=ignore");
    const result = await terminateGroup(agent.pgid, { stopTimeoutMs: 300, exited: agent.exited });
    expect(result).toEqual({ killed: true });
    expect(await agent.exited).toMatchObject({ code: 0 });
    expect(isProcessAlive(grandchild ?? 0)).toBe(false);
  });

  it("works without an exit promise, as for an adopted agent", async () => {
    const { agent, grandchild } = await startGroup("--ignore-term", "--grandchild=exit");
    // The leader is our child here, so Node reaps it; an adopted leader is reaped by init.
    const result = await terminateGroup(agent.pgid, { stopTimeoutMs: 200 });
    expect(result).toEqual({ killed: true });
    expect(isProcessAlive(agent.pid)).toBe(false);
    expect(isProcessAlive(grandchild ?? 0)).toBe(false);
    await agent.exited;
  });

  it("cuts the grace short with SIGKILL when its signal aborts", async () => {
    const { agent } = await startGroup("--ignore-term");
    const controller = new AbortController();
    const stopping = terminateGroup(agent.pgid, {
      stopTimeoutMs: 60_000,
      exited: agent.exited,
      signal: controller.signal,
    });
    controller.abort();
    expect(await stopping).toEqual({ killed: true });
    expect(await agent.exited).toMatchObject({ signal: "SIGKILL" });
  });

  it("resolves at once for a group that is already gone", async () => {
    const { agent } = await startGroup();
    await terminateGroup(agent.pgid, { stopTimeoutMs: 5000, exited: agent.exited });
    expect(await terminateGroup(agent.pgid, { stopTimeoutMs: 5000, exited: agent.exited })).toEqual(
      { killed: false },
    );
    expect(await terminateGroup(agent.pgid, { stopTimeoutMs: 5000 })).toEqual({ killed: false });
  });

  it("refuses to signal every process or the daemon's own group", async () => {
    await expect(terminateGroup(1, { stopTimeoutMs: 10 })).rejects.toThrow(RangeError);
    await expect(terminateGroup(0, { stopTimeoutMs: 10 })).rejects.toThrow(RangeError);
    await expect(terminateGroup(-5, { stopTimeoutMs: 10 })).rejects.toThrow(RangeError);
    const ownGroup = readProcessGroup(process.pid) ?? -1;
    await expect(terminateGroup(ownGroup, { stopTimeoutMs: 10 })).rejects.toThrow(/own group/);
  });
});

const FAULT_AGENT = fileURLToPath(new URL("../fixtures/fault-agent.mjs", import.meta.url));
const uid = process.getuid?.() ?? 0;

describe("terminating a whole tree without a cgroup (issue 13)", () => {
  it("stops a grandchild that left the group with setsid, found by the environment it inherited", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const marker = { key: "ATOLL_TEST_TREE", value: `${process.pid}-${Date.now()}`, uid };
    const agent = await spawnAgent({
      argv: [process.execPath, FAULT_AGENT],
      cwd: dir,
      env: { FAULT: "setsid-grandchild", PATH: process.env.PATH ?? "", [marker.key]: marker.value },
      output: { file: logPath },
    });
    tracker.track(agent.pid);
    const escaped = Number((await waitForLogLine(logPath, /^ESCAPED (\d+)$/))[1]);
    tracker.track(escaped);
    await waitUntil(() => readProcessGroup(escaped) === escaped, "the grandchild called setsid");
    const tree = processTree({ group: agent.pgid, marker });
    expect(tree.members().sort()).toEqual([agent.pid, escaped].sort());
    const result = await terminateGroup(agent.pgid, {
      stopTimeoutMs: 5_000,
      exited: agent.exited,
      tree,
    });
    // "Gone" only once the escaped one is gone too (sleep ends on SIGTERM: no SIGKILL needed).
    expect(result).toEqual({ killed: false });
    expect(isProcessAlive(escaped)).toBe(false);
    expect(tree.alive()).toBe(false);
  });

  it("signals leftovers one by one, never the rest of their process group", async () => {
    const { agent, grandchild } = await startGroup("--grandchild=exit");
    // Only the grandchild is proven a leftover: the leader, in the same group, is not listed.
    const ticks = readProcessStartTime(grandchild ?? 0) ?? 0;
    const tree = processTree({ processes: [{ pid: grandchild ?? 0, startTimeTicks: ticks }] });
    expect(await terminateTree(tree, { stopTimeoutMs: 5_000 })).toEqual({
      members: 1,
      killed: false,
    });
    expect(isProcessAlive(grandchild ?? 0)).toBe(false);
    expect(isProcessAlive(agent.pid)).toBe(true);
    await terminateGroup(agent.pgid, { stopTimeoutMs: 5_000, exited: agent.exited });
  });

  it("does nothing to a listed process whose pid now belongs to another process", async () => {
    const other = spawn("sleep", ["30"], { stdio: "ignore" });
    const pid = other.pid ?? 0;
    tracker.track(pid);
    const tree = processTree({ processes: [{ pid, startTimeTicks: 1 }] });
    expect(await terminateTree(tree, { stopTimeoutMs: 10 })).toEqual({ members: 0, killed: false });
    expect(isProcessAlive(pid)).toBe(true);
    const exited = once(other, "exit");
    other.kill("SIGKILL");
    await exited;
  });
});
