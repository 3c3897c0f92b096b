import { spawn } from "node:child_process";
import { once } from "node:events";
import { symlink } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  commandLineMatches,
  createGroupMemoryReader,
  findGroupLeadersWithEnv,
  findProcessesWithEnv,
  isProcessAlive,
  isSameProcess,
  PAGE_SIZE_BYTES,
  parseProcStat,
  parseStatusUids,
  readProcessCommandLine,
  readProcessGroup,
  readProcessStartTime,
  readProcessUids,
  readProcStat,
} from "../../src/platform/proc-info.ts";
import { findPortHolder } from "../../src/platform/proc-sockets.ts";
import { fixture, ProcessTracker, TempDirs, waitUntil } from "./helpers.ts";

const dirs = new TempDirs();
const tracker = new ProcessTracker();

afterEach(async () => {
  const leaked = tracker.leaked();
  await dirs.cleanup();
  expect(leaked).toEqual([]);
});

/** Starts a fixture that waits for SIGTERM and resolves once it printed "ready". */
async function startWaiting(executable = process.execPath) {
  const child = spawn(executable, [fixture("output-lines.mjs"), "wait"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  if (child.pid === undefined) throw new Error("spawn failed");
  tracker.track(child.pid);
  let output = "";
  for await (const chunk of child.stdout) {
    output += String(chunk);
    if (output.includes("ready\n")) break;
  }
  return child;
}

async function stop(child: ReturnType<typeof spawn>): Promise<void> {
  const exit = once(child, "exit");
  child.kill("SIGTERM");
  await exit;
}

describe("parseProcStat", () => {
  it("reads fields after a command name holding spaces and parentheses", () => {
    const fields = Array.from({ length: 50 }, (_, index) => String(index + 3));
    fields[0] = "S";
    const text = `4242 (a) (b c)) ${fields.join(" ")}\n`;
    const stat = parseProcStat(text);
    expect(stat).toEqual({
      pid: 4242,
      comm: "a) (b c)",
      state: "S",
      ppid: 4,
      pgrp: 5,
      startTimeTicks: 22,
      rssPages: 24,
    });
  });

  it("rejects text without the stat shape", () => {
    expect(parseProcStat("")).toBeUndefined();
    expect(parseProcStat("12 (x) S")).toBeUndefined();
  });
});

describe("process facts from /proc", () => {
  it("reads the start time of a live process and matches it with isSameProcess", async () => {
    const child = await startWaiting();
    const pid = child.pid ?? 0;
    const startTime = readProcessStartTime(pid);
    expect(startTime).toBeTypeOf("number");
    expect(isSameProcess(pid, startTime ?? -1)).toBe(true);
    expect(isSameProcess(pid, (startTime ?? 0) + 1)).toBe(false);
    expect(isProcessAlive(pid)).toBe(true);
    await stop(child);
    expect(isProcessAlive(pid)).toBe(false);
    expect(isSameProcess(pid, startTime ?? -1)).toBe(false);
    expect(readProcessStartTime(pid)).toBeUndefined();
  });

  it("parses a real process whose command name contains spaces and parentheses", async () => {
    const dir = await dirs.make();
    // Node renames its main thread, so a plain binary shows the name the kernel took from exec.
    const oddName = join(dir, "x) (y z");
    await symlink("/bin/sleep", oddName);
    const child = spawn(oddName, ["30"], { stdio: "ignore" });
    tracker.track(child.pid ?? 0);
    // libuv returns from spawn only after exec succeeded, so the name is already in place.
    await once(child, "spawn");
    const stat = readProcStat(child.pid ?? 0);
    expect(stat?.comm).toBe("x) (y z");
    expect(stat?.ppid).toBe(process.pid);
    expect(stat?.startTimeTicks).toBe(readProcessStartTime(child.pid ?? 0));
    await stop(child);
  });

  it("treats a zombie (exited, never reaped) as neither alive nor the same process", async () => {
    // sh starts a background sleep, then becomes a `sleep` itself, which never reaps children.
    const parent = spawn("/bin/sh", ["-c", "sleep 30 & echo $!; exec sleep 30"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    const parentPid = parent.pid ?? 0;
    tracker.track(parentPid);
    const [chunk] = (await once(parent.stdout, "data")) as [Buffer];
    const zombie = Number(String(chunk).trim());
    tracker.track(zombie);
    const startTime = readProcessStartTime(zombie);
    await waitUntil(() => readProcStat(parentPid)?.comm === "sleep", "sh has become sleep");
    process.kill(zombie, "SIGKILL");
    await waitUntil(() => readProcStat(zombie)?.state === "Z", "the background child is a zombie");
    expect(() => process.kill(zombie, 0)).not.toThrow();
    expect(isProcessAlive(zombie)).toBe(false);
    expect(isSameProcess(zombie, startTime ?? -1)).toBe(false);
    await stop(parent);
  });

  it("reports no process for pid 0, negative or absurd pids", () => {
    expect(isProcessAlive(0)).toBe(false);
    expect(isProcessAlive(-5)).toBe(false);
    expect(readProcessStartTime(2 ** 31)).toBeUndefined();
  });

  it("sums the resident memory of a process group, scanning /proc once per period", async () => {
    const child = spawn(process.execPath, [fixture("group-leader.mjs"), "--grandchild=exit"], {
      stdio: ["ignore", "pipe", "ignore"],
      detached: true,
    });
    const pid = child.pid ?? 0;
    tracker.track(pid);
    let output = "";
    for await (const chunk of child.stdout) {
      output += String(chunk);
      if (output.includes("\n")) break;
    }
    const grandchild = Number(/grandchild=(\d+)/.exec(output)?.[1]);
    tracker.track(grandchild);
    expect(readProcessGroup(grandchild)).toBe(pid);
    const rssOf = (p: number) => (readProcStat(p)?.rssPages ?? 0) * PAGE_SIZE_BYTES;
    let clock = 0;
    const groupResidentBytes = createGroupMemoryReader(1_000, () => clock);
    const total = groupResidentBytes(pid);
    // Two node processes: each resident set is megabytes; the sum covers both (allowing drift).
    expect(total).toBeGreaterThan(rssOf(pid));
    expect(total).toBeGreaterThan(10 * 1024 * 1024);
    const exit = once(child, "exit");
    process.kill(-pid, "SIGTERM");
    await exit;
    await waitUntil(() => !isProcessAlive(grandchild), "the grandchild is gone");
    // Within the period the last scan answers; after it, a new scan sees the group gone.
    expect(groupResidentBytes(pid)).toBe(total);
    clock += 1_000;
    expect(groupResidentBytes(pid)).toBe(0);
    expect(groupResidentBytes(2 ** 31 - 1)).toBe(0);
  });

  it("has a plausible page size", () => {
    expect([4096, 16384, 65536]).toContain(PAGE_SIZE_BYTES);
  });

  it("finds the process listening on a port", async () => {
    const server = createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    try {
      expect(findPortHolder(address.port)?.pid).toBe(process.pid);
    } finally {
      server.close();
      await once(server, "close");
    }
    expect(findPortHolder(address.port)).toBeUndefined();
  });
});

describe("who a process is (issue 13)", () => {
  it("reads the real and effective uid from /proc/<pid>/status", () => {
    expect(parseStatusUids("Name:\tx\nUid:\t65534\t0\t0\t0\nGid:\t0\n")).toEqual({
      real: 65534,
      effective: 0,
    });
    expect(parseStatusUids("Name:\tx\n")).toBeUndefined();
    const uid = process.getuid?.() ?? 0;
    expect(readProcessUids(process.pid)).toEqual({ real: uid, effective: uid });
    expect(readProcessUids(2 ** 31 - 1)).toBeUndefined();
  });

  it("matches a command line that ends with the argv it was started with", async () => {
    expect(readProcessCommandLine(process.pid)?.[0]).toBe(process.execPath);
    const argv = ["/srv/agent.py", "--port", "8100"];
    expect(commandLineMatches(argv, argv)).toBe(true);
    // A #! interpreter, or the cgroup trampoline, in front of it.
    expect(commandLineMatches(argv, ["/usr/bin/python3", ...argv])).toBe(true);
    expect(commandLineMatches(argv, ["/bin/sh", "-c", "...", "atoll-cgroup", "/cg", ...argv])).toBe(
      true,
    );
    expect(commandLineMatches(argv, ["/srv/agent.py", "--port", "8101"])).toBe(false);
    expect(commandLineMatches(argv, ["agent: renamed"])).toBe(false);
    expect(commandLineMatches([], [])).toBe(false);
  });

  it.skipIf((process.getuid?.() ?? 1) !== 0)(
    "finds processes by an environment entry only when they run as the given user",
    async () => {
      const entry = { key: "ATOLL_TEST_MARK", value: `${process.pid}-${Date.now()}` };
      const env = { PATH: process.env.PATH, [entry.key]: entry.value };
      const ours = spawn("sleep", ["30"], { env, stdio: "ignore", detached: true });
      // Another user carrying the very same entry.
      const foreign = spawn(
        "setpriv",
        ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "sleep", "30"],
        { env, stdio: "ignore", detached: true },
      );
      const pids = [ours.pid ?? 0, foreign.pid ?? 0];
      tracker.track(...pids);
      await waitUntil(
        () => readProcessUids(foreign.pid ?? 0)?.real === 65534,
        "the foreign process runs as nobody",
      );
      try {
        expect(findProcessesWithEnv(entry.key, entry.value, 0).map((p) => p.pid)).toEqual([
          ours.pid,
        ]);
        expect(findProcessesWithEnv(entry.key, entry.value, 65534).map((p) => p.pid)).toEqual([
          foreign.pid,
        ]);
        const leaders = findGroupLeadersWithEnv(entry.key, entry.value, { uid: 0 });
        expect(leaders.map((l) => l.stat.pid)).toEqual([ours.pid]);
      } finally {
        const exits = [once(ours, "exit"), once(foreign, "exit")];
        for (const pid of pids) process.kill(pid, "SIGKILL");
        await Promise.all(exits);
      }
    },
  );
});
