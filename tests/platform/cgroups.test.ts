/**
 * cgroups as the containment of an agent's tree (docs/platform.md, "Containment"), on the real
 * hierarchies of this machine: detection, the trampoline joining the cgroup before the agent can
 * fork, a setsid grandchild still a member, killing the whole tree, removing every cgroup made.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { ownCgroupPath, parseCgroupMounts } from "../../src/platform/cgroup-hierarchy.ts";
import { Cgroups, type CgroupVersion } from "../../src/platform/cgroups.ts";
import {
  createGroupMemoryReader,
  isProcessAlive,
  PAGE_SIZE_BYTES,
  readProcStat,
} from "../../src/platform/proc-info.ts";
import { processTree } from "../../src/platform/process-tree.ts";
import { spawnAgent } from "../../src/platform/spawn-agent.ts";
import { ProcessTracker, TempDirs, waitForLogLine, waitUntil } from "./helpers.ts";

const FAULT_AGENT = fileURLToPath(new URL("../fixtures/fault-agent.mjs", import.meta.url));

const dirs = new TempDirs();
const tracker = new ProcessTracker();
const opened: Cgroups[] = [];
const madeDirs: string[] = [];

afterEach(async () => {
  const leaked = tracker.leaked();
  for (const cgroups of opened.splice(0)) {
    for (const cgroup of cgroups.list()) cgroup.kill();
    await waitUntil(() => cgroups.list().every((c) => !c.populated()), "the cgroups are empty");
    cgroups.close();
    expect(existsSync(cgroups.base), `${cgroups.base} is removed`).toBe(false);
  }
  for (const dir of madeDirs.splice(0).reverse()) rmdirSync(dir);
  await dirs.cleanup();
  expect(leaked).toEqual([]);
});

const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;

function baseName(): string {
  return `atoll-deploy-test${randomBytes(6).toString("hex")}`;
}

function open(versions: readonly CgroupVersion[], recordedBase?: string): Cgroups | undefined {
  const cgroups = Cgroups.open({ baseName: baseName(), versions, recordedBase });
  if (cgroups !== undefined) opened.push(cgroups);
  return cgroups;
}

const available = (version: CgroupVersion): boolean => {
  const probe = Cgroups.open({ baseName: baseName(), versions: [version] });
  probe?.close();
  return probe !== undefined;
};

describe("cgroup hierarchies", () => {
  it("finds the v2 and v1 hierarchies of a hybrid layout with their controllers", () => {
    expect(parseCgroupMounts(HYBRID)).toEqual([
      { version: 1, mountPoint: "/sys/fs/cgroup/cpu", controllers: ["cpu"] },
      { version: 1, mountPoint: "/sys/fs/cgroup/freezer", controllers: ["freezer"] },
      { version: 1, mountPoint: "/sys/fs/cgroup/pids", controllers: ["pids"] },
      { version: 1, mountPoint: "/sys/fs/cgroup/systemd", controllers: ["xattr", "name=systemd"] },
      { version: 2, mountPoint: "/sys/fs/cgroup/unified", controllers: [] },
    ]);
    const pure = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    expect(parseCgroupMounts(pure)).toEqual([
      { version: 2, mountPoint: "/sys/fs/cgroup", controllers: [] },
    ]);
  });

  it("reads the daemon's own cgroup per hierarchy", () => {
    const self = "8:pids:/user.slice\n6:freezer:/\n0::/user.slice/session-1.scope\n";
    const [, freezer, pids, , unified] = parseCgroupMounts(HYBRID);
    expect(unified && ownCgroupPath(unified, self)).toBe("/user.slice/session-1.scope");
    expect(pids && ownCgroupPath(pids, self)).toBe("/user.slice");
    expect(freezer && ownCgroupPath(freezer, self)).toBe("/");
  });

  it("offers none when no version is allowed or no hierarchy is mounted", () => {
    expect(Cgroups.open({ baseName: baseName(), versions: [] })).toBeUndefined();
    expect(Cgroups.open({ baseName: baseName(), mountinfo: "" })).toBeUndefined();
  });
});

describe.each([2, 1] as const)("cgroup v%i as an agent's containment", (version) => {
  it.skipIf(!available(version))(
    "starts the agent inside its cgroup, so that a setsid grandchild is a member, and ends them all at once",
    async () => {
      const cgroups = open([version]);
      if (cgroups === undefined) throw new Error("no cgroup");
      expect(cgroups.describe()).toContain(`cgroup v${version}`);
      const cgroup = cgroups.create("a");
      const dir = await dirs.make();
      const logPath = join(dir, "a.log");
      const agent = await spawnAgent({
        argv: [process.execPath, FAULT_AGENT],
        cwd: dir,
        env: { FAULT: "setsid-grandchild", PORT: "0", PATH: process.env.PATH ?? "" },
        output: { file: logPath },
        cgroup,
      });
      tracker.track(agent.pid);
      const escaped = Number((await waitForLogLine(logPath, /^ESCAPED (\d+)$/))[1]);
      tracker.track(escaped);
      await waitForLogLine(logPath, /^READY \d+$/);
      // The trampoline exec'd the agent itself: same pid, the agent's own command line.
      expect(agent.commandLine).toEqual([process.execPath, FAULT_AGENT]);
      expect(cgroup.pids().sort()).toEqual([agent.pid, escaped].sort());
      expect(cgroups.cgroupOf(escaped)).toMatchObject({ agent: "a", dir: cgroup.dir });
      // Memory is the cgroup's members': with the leader gone, exactly the grandchild's.
      process.kill(agent.pid, "SIGKILL");
      await agent.exited;
      await waitUntil(() => cgroup.pids().length === 1, "only the grandchild is left");
      const tree = processTree({ cgroup });
      expect(tree.residentBytes()).toBe((readProcStat(escaped)?.rssPages ?? -1) * PAGE_SIZE_BYTES);
      expect(createGroupMemoryReader()(agent.pgid)).toBe(0);
      cgroup.kill();
      await waitUntil(() => !cgroup.populated(), "the cgroup is empty");
      await waitUntil(() => !isProcessAlive(escaped), "the escaped grandchild is gone");
      expect(cgroup.remove()).toBe(true);
      expect(cgroups.list()).toEqual([]);
    },
  );
});

describe.skipIf(!available(2) && !available(1))("the cgroup trampoline", () => {
  it("passes the agent its argv and environment as they are, never through a shell string", async () => {
    const cgroups = open([2, 1]);
    if (cgroups === undefined) throw new Error("no cgroup");
    const dir = await dirs.make();
    const logPath = join(dir, "argv.log");
    const odd = ["a b", "$HOME", "'\"`;|&", "--", "$(touch pwned)", ""];
    const agent = await spawnAgent({
      argv: [
        process.execPath,
        "-e",
        "console.log(JSON.stringify([process.argv.slice(1), process.env.ODD]))",
        ...odd,
      ],
      cwd: dir,
      env: { ODD: "$(touch pwned)" },
      output: { file: logPath },
      cgroup: cgroups.create("a"),
    });
    tracker.track(agent.pid);
    expect(await agent.exited).toMatchObject({ code: 0 });
    const line = (await waitForLogLine(logPath, /^\[.*\]$/))[0];
    expect(JSON.parse(line)).toEqual([odd, "$(touch pwned)"]);
    expect(existsSync(join(dir, "pwned"))).toBe(false);
  });
});

describe.skipIf(!available(2))("the cgroup base a previous daemon recorded", () => {
  it("is used when it is a directory of the expected name in a hierarchy, else ignored", () => {
    const first = open([2]);
    if (first === undefined) throw new Error("no cgroup v2");
    const name = first.base.split("/").at(-1) ?? "";
    // Elsewhere in the hierarchy, as a daemon that ran in another cgroup would have left it.
    const parent = join(first.hierarchy.mountPoint, `atoll-test-parent-${process.pid}`);
    mkdirSync(parent);
    madeDirs.push(parent);
    const recorded = join(parent, name);
    const second = Cgroups.open({ baseName: name, versions: [2], recordedBase: recorded });
    expect(second?.base).toBe(first.base); // it does not exist: ignored
    mkdirSync(recorded);
    const third = Cgroups.open({ baseName: name, versions: [2], recordedBase: recorded });
    if (third !== undefined) opened.push(third);
    expect(third?.base).toBe(recorded);
    // A forged record naming someone else's cgroup is never taken.
    for (const forged of [parent, first.hierarchy.mountPoint, `${recorded}/../${name}`, "/tmp"]) {
      expect(Cgroups.open({ baseName: name, versions: [2], recordedBase: forged })?.base).toBe(
        first.base,
      );
    }
  });
});
