/**
 * Restoring a previous run from state.json on real processes: a hand-edited or damaged record
 * (a port of 0, not a number, or one two agents claim) never throws during start-up; every live
 * agent ends adopted or replaced, each on a port of its own. Ownership (issue 13) is in
 * restore-ownership.test.ts.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isSameProcess, readProcessStartTime } from "../../src/platform/proc-info.ts";
import { StateFile } from "../../src/platform/state-file.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { SUPERVISOR_TOKEN_ENV } from "../../src/supervisor/agent-ownership.ts";
import { type DaemonState, restoreState } from "../../src/supervisor/daemon-state.ts";
import { waitUntil } from "../platform/helpers.ts";
import {
  createHarness,
  FAULT_AGENT,
  faultAgentToml,
  type Harness,
  waitForStatus,
} from "./harness.ts";

let harness: Harness | undefined;
const strays: ChildProcess[] = [];

afterEach(async () => {
  await harness?.close();
  harness = undefined;
  const left = strays.splice(0).filter((child) => isGroupAlive(child.pid ?? 0));
  for (const child of left) process.kill(-(child.pid ?? 0), "SIGKILL");
  expect(left.map((c) => c.pid)).toEqual([]);
});

const silentLogger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A fault agent started outside any registry, in its own group, with the agent's token but
 * without the port variables a supervisor sets: only the record says its port.
 */
async function strayAgent(
  name: string,
  port: number,
): Promise<{ pid: number; startTimeTicks: number }> {
  const child = spawn(process.execPath, [FAULT_AGENT], {
    detached: true,
    stdio: ["ignore", "pipe", "ignore"],
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      ATOLL_AGENT_NAME: name,
      [SUPERVISOR_TOKEN_ENV]: harness?.ownership.tokenFor(name) ?? "",
    },
  });
  strays.push(child);
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`stray agent exited with ${code}`)));
    child.stdout?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("READY")) resolve();
    });
  });
  const pid = child.pid ?? 0;
  const startTimeTicks = readProcessStartTime(pid);
  if (startTimeTicks === undefined) throw new Error("no start time in /proc");
  return { pid, startTimeTicks };
}

describe("restoring state", () => {
  it("adopts or replaces agents recorded with a port of 0, not a number, or a taken one", async () => {
    const agents = Object.fromEntries(["a", "b", "c", "d"].map((n) => [n, faultAgentToml(n)]));
    harness = await createHarness(agents);
    const first = harness.registry;
    const a = await first.deploy("a");
    const b = await first.deploy("b");
    const saved = first.persistentState();
    // As if the daemon died: its agents keep running, nobody supervises them.
    first.detach();
    const c = await strayAgent("c", harness.basePort + 20);
    const d = await strayAgent("d", harness.basePort + 21);
    const command = [process.execPath, FAULT_AGENT];
    const record = (pid: number, startTimeTicks: number | undefined, port: unknown) => ({
      desired: "running" as const,
      port: port as number,
      pid,
      startTimeTicks,
      startTimeMs: Date.now(),
      command,
    });
    const state: DaemonState = {
      file: new StateFile(path.join(harness.dir, "state.json")),
      ownership: harness.ownership,
      cgroups: harness.cgroups,
      recorded: {
        a: record(a.pid, saved.a?.startTimeTicks, 0),
        b: record(b.pid, saved.b?.startTimeTicks, "NaN"),
        // c and d claim one port: the second one met is replaced by a fresh start.
        c: record(c.pid, c.startTimeTicks, harness.basePort + 20),
        d: record(d.pid, d.startTimeTicks, harness.basePort + 20),
      },
      revision: undefined,
    };

    const second = await harness.newRegistry();
    const restored = await restoreState(state, second, silentLogger, new AbortController().signal);
    expect(restored.adopted.sort()).toEqual(["a", "b", "c"]);
    expect(restored.restarted).toEqual(["d"]);
    // a and b carry their real port in their environment; c keeps the port it was recorded with.
    expect(second.status("a")).toMatchObject({ state: "RUNNING", pid: a.pid, port: a.port });
    expect(second.status("b")).toMatchObject({ state: "RUNNING", pid: b.pid, port: b.port });
    expect(second.status("c")).toMatchObject({ pid: c.pid, port: harness.basePort + 20 });
    // d's process was stopped (nothing may run unsupervised) and d started again elsewhere.
    expect(isGroupAlive(d.pid)).toBe(false);
    const restarted = await waitForStatus(
      second,
      "d",
      (s) => s.state === "RUNNING" && s.health === "HEALTHY",
    );
    expect(restarted.pid).not.toBe(d.pid);
    const ports = second.list().map((s) => s.port);
    expect(new Set(ports).size).toBe(4);
    await waitUntil(() => !isGroupAlive(d.pid), "d's old group is gone");
  });

  it.skipIf(process.getuid?.() !== 0)(
    "never adopts or signals a process of another user, even one carrying the agent's real token",
    async () => {
      harness = await createHarness({ a: faultAgentToml("a") });
      const port = harness.basePort + 5;
      // The token leaked to a process of another user (or an agent dropped its privileges).
      const impostor = spawn(
        "setpriv",
        [
          "--reuid",
          "nobody",
          "--regid",
          "nogroup",
          "--clear-groups",
          process.execPath,
          FAULT_AGENT,
        ],
        {
          detached: true,
          stdio: ["ignore", "pipe", "ignore"],
          env: {
            PATH: process.env.PATH,
            PORT: String(port),
            ATOLL_AGENT_NAME: "a",
            ATOLL_AGENT_PORT: String(port),
            [SUPERVISOR_TOKEN_ENV]: harness.ownership.tokenFor("a"),
          },
        },
      );
      strays.push(impostor);
      await new Promise<void>((resolve) => {
        impostor.stdout?.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("READY")) resolve();
        });
      });
      const pid = impostor.pid ?? 0;
      const startTimeTicks = readProcessStartTime(pid);
      const warnings: string[] = [];
      const logger = { ...silentLogger, warn: (message: string) => warnings.push(message) };
      const state: DaemonState = {
        file: new StateFile(path.join(harness.dir, "state.json")),
        ownership: harness.ownership,
        cgroups: harness.cgroups,
        recorded: {
          a: {
            desired: "running",
            port,
            pid,
            startTimeTicks,
            startTimeMs: Date.now(),
            command: [process.execPath, FAULT_AGENT],
          },
        },
        revision: undefined,
      };
      const restored = await restoreState(
        state,
        harness.registry,
        logger,
        new AbortController().signal,
      );
      expect(restored).toEqual({ adopted: [], restarted: ["a"], stopped: [] });
      expect(warnings).toContain(
        "a process claims to be an agent of this state dir but is not proven ours; leaving it alone",
      );
      const started = await waitForStatus(harness.registry, "a", (s) => s.health === "HEALTHY");
      expect(started.pid).not.toBe(pid);
      expect(started.port).not.toBe(port);
      expect(isSameProcess(pid, startTimeTicks ?? 0)).toBe(true);
      const exited = once(impostor, "exit");
      impostor.kill("SIGKILL");
      await exited;
    },
  );
});
