/**
 * The whole tree of an agent, with each mechanism the daemon may use (docs/platform.md,
 * "Containment"): a cgroup v2, a cgroup v1 hierarchy, or none (the processes carrying the
 * agent's token, through /proc). A setsid grandchild is stopped with its agent, also after a
 * daemon restart adopted the agent.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Cgroups, type CgroupVersion } from "../../src/platform/cgroups.ts";
import { isProcessAlive, readProcessGroup } from "../../src/platform/proc-info.ts";
import { StateFile } from "../../src/platform/state-file.ts";
import { restoreState } from "../../src/supervisor/daemon-state.ts";
import { waitUntil } from "../platform/helpers.ts";
import { createHarness, faultAgentToml, type Harness, waitForStatus } from "./harness.ts";

let harness: Harness | undefined;
const escaped = new Set<number>();

afterEach(async () => {
  await harness?.close();
  harness = undefined;
  const left = [...escaped].filter(isProcessAlive);
  for (const pid of left) process.kill(pid, "SIGKILL");
  escaped.clear();
  expect(left).toEqual([]);
});

const silentLogger = { debug() {}, info() {}, warn() {}, error() {} };

function writable(version: CgroupVersion): boolean {
  const probe = Cgroups.open({ baseName: `atoll-deploy-probe${process.pid}`, versions: [version] });
  probe?.close();
  return probe !== undefined;
}

const mechanisms: { name: string; versions: readonly CgroupVersion[]; available: boolean }[] = [
  { name: "a cgroup v2", versions: [2], available: writable(2) },
  { name: "a cgroup v1 hierarchy", versions: [1], available: writable(1) },
  { name: "no cgroup (the token through /proc)", versions: [], available: true },
];

/** The pid the agent's log says its setsid grandchild has, once it left the group. */
async function escapedGrandchild(h: Harness, except = 0): Promise<number> {
  const logPath = path.join(h.dir, "logs", "a.log");
  let pid = 0;
  await waitUntil(() => {
    let text = "";
    try {
      text = readFileSync(logPath, "utf8");
    } catch {
      return false;
    }
    const found = [...text.matchAll(/^ESCAPED (\d+)$/gm)].map((m) => Number(m[1]));
    pid = found.filter((p) => p !== except).at(-1) ?? 0;
    return pid > 0 && readProcessGroup(pid) === pid;
  }, "the grandchild left the group");
  escaped.add(pid);
  return pid;
}

describe.each(mechanisms)("the tree of an agent with $name", ({ versions, available }) => {
  it.skipIf(!available)("stops a setsid grandchild with its agent on Undeploy", async () => {
    harness = await createHarness(
      { a: faultAgentToml("a", { env: { FAULT: "setsid-grandchild" } }) },
      { cgroupVersions: versions },
    );
    expect(harness.cgroups?.version).toBe(versions[0]);
    await harness.registry.deploy("a");
    const grandchild = await escapedGrandchild(harness);
    const stopped = await harness.registry.undeploy("a");
    expect(stopped.state).toBe("STOPPED");
    expect(isProcessAlive(grandchild)).toBe(false);
  });

  it.skipIf(!available)(
    "keeps the grandchild in the tree of the agent the next daemon adopts, and stops both",
    async () => {
      harness = await createHarness(
        { a: faultAgentToml("a", { env: { FAULT: "setsid-grandchild" } }) },
        { cgroupVersions: versions },
      );
      const first = harness.registry;
      const a = await first.deploy("a");
      const grandchild = await escapedGrandchild(harness);
      const recorded = first.persistentState();
      first.detach();
      const second = await harness.newRegistry();
      const restored = await restoreState(
        {
          file: new StateFile(path.join(harness.dir, "state.json")),
          ownership: harness.ownership,
          cgroups: harness.cgroups,
          recorded,
          revision: undefined,
        },
        second,
        silentLogger,
        new AbortController().signal,
      );
      expect(restored).toEqual({ adopted: ["a"], restarted: [], stopped: [] });
      expect(isProcessAlive(grandchild)).toBe(true); // a member of the adopted tree, not a stray
      await waitForStatus(second, "a", (s) => s.health === "HEALTHY");
      await second.undeploy("a");
      expect(isProcessAlive(a.pid)).toBe(false);
      expect(isProcessAlive(grandchild)).toBe(false);
    },
  );
});
