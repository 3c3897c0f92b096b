import { execFileSync } from "node:child_process";
import { lstatSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { createJsonLogger } from "../../src/core/logger.ts";
import { DROPPED_MARKER } from "../../src/platform/keeper/bounded-log.ts";
import { KEEPER_ENV } from "../../src/platform/keeper/protocol.ts";
import { spawnKeeper } from "../../src/platform/keeper-process.ts";
import { OutputKeeper } from "../../src/platform/output-keeper.ts";
import { findGroupLeadersWithEnv, isSameProcess } from "../../src/platform/proc-info.ts";
import { type SpawnedAgent, spawnAgent } from "../../src/platform/spawn-agent.ts";
import { ProcessTracker, TempDirs, waitUntil } from "./helpers.ts";
import { checkSequence, DiskSampler, diskUsage, FLOOD_AGENT, readLogLines } from "./log-check.ts";

const dirs = new TempDirs();
const tracker = new ProcessTracker();
const keepers: { keeper: OutputKeeper; stateDir: string }[] = [];
let cleanups: (() => Promise<void> | void)[] = [];
const silent = createJsonLogger({ sink: { write: () => true }, level: "error" });

afterEach(async () => {
  const leaked = tracker.leaked();
  const leftKeepers: number[] = [];
  const entries = keepers.splice(0);
  for (const { keeper } of entries) await keeper.stop();
  for (const stateDir of new Set(entries.map((e) => e.stateDir))) {
    for (const leader of findGroupLeadersWithEnv(KEEPER_ENV, stateDir)) {
      leftKeepers.push(leader.stat.pid);
      process.kill(-leader.stat.pid, "SIGKILL");
    }
  }
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  cleanups = [];
  await dirs.cleanup();
  expect(leaked).toEqual([]);
  expect(leftKeepers).toEqual([]);
});

interface FloodStats {
  readonly written: number;
  readonly lines: number;
  readonly errors: number;
  readonly firstError: string;
  readonly maxWriteMs: number;
  readonly flooding: boolean;
}

async function setup(options: { build?: string } = {}) {
  const dir = await dirs.make();
  const stateDir = join(dir, "state");
  const logPath = join(stateDir, "logs", "a.log");
  const keeper = newKeeper(stateDir, options.build);
  return { dir, stateDir, logPath, keeper };
}

function newKeeper(stateDir: string, build?: string): OutputKeeper {
  const keeper = new OutputKeeper({
    stateDir,
    logger: silent,
    ...(build !== undefined && { build }),
  });
  keepers.push({ keeper, stateDir });
  return keeper;
}

/** Starts the flood fixture writing into `fifo`; its stats go to `<dir>/stats.json`. */
async function flood(
  dir: string,
  fifo: string,
  env: Record<string, string>,
): Promise<{ agent: SpawnedAgent; stats: () => FloodStats }> {
  const statsFile = join(dir, "stats.json");
  const agent = await spawnAgent({
    argv: [process.execPath, FLOOD_AGENT],
    cwd: dir,
    env: { STATS_FILE: statsFile, ...env },
    output: { fifo },
  });
  tracker.track(agent.pid);
  const stats = (): FloodStats => {
    try {
      return JSON.parse(readFileSync(statsFile, "utf8")) as FloodStats;
    } catch {
      return { written: 0, lines: 0, errors: 0, firstError: "", maxWriteMs: 0, flooding: true };
    }
  };
  return { agent, stats };
}

/** (keep + 1) × maxBytes + 64 KiB: SPEC §4's bound. */
function bound(maxBytes: number, keep: number): number {
  return (keep + 1) * maxBytes + 64 * 1024;
}

describe("OutputKeeper", () => {
  it("holds a flooding agent's logs to the bound at every 50 ms sample and loses no line", async () => {
    const { dir, logPath, keeper } = await setup();
    const maxBytes = 256 * 1024;
    const keep = 2;
    const fifo = await keeper.prepare({ name: "a", log: logPath, maxBytes, keep });
    const sampler = new DiskSampler(logPath);
    const { agent, stats } = await flood(dir, fifo, { FLOOD_RATE: "6000000", FLOOD_SECONDS: "3" });
    const exit = await agent.exited;
    expect(exit.code).toBe(0);
    const final = stats();
    await waitUntil(
      () => checkSequence(readLogLines(logPath)).last === final.lines - 1,
      "the keeper wrote the agent's last line",
    );
    sampler.stop();
    expect(final.written).toBeGreaterThan(6_000_000); // several MB/s for 3 s
    expect(sampler.samples).toBeGreaterThan(40);
    expect(sampler.peakBytes).toBeLessThanOrEqual(bound(maxBytes, keep));
    expect(sampler.peakAllocated).toBeLessThanOrEqual(bound(maxBytes, keep));
    expect(sampler.peakFiles).toBe(keep + 1);
    // What is left is the newest output, whole and in order, each file at most maxBytes.
    const check = checkSequence(readLogLines(logPath));
    expect(check).toMatchObject({ gaps: [], repeats: 0, other: [], markers: [] });
    expect(check.lines).toBeGreaterThan((keep * maxBytes) / 100 - 10); // at least the rotated files
    expect((await keeper.stats()).a).toMatchObject({ written: final.written, dropped: 0 });
    expect(final).toMatchObject({ errors: 0 });
    // The agent never waited long for its writes (generous: the machine is shared).
    expect(final.maxWriteMs).toBeLessThan(1_000);
  });

  it("gives the agent its FIFO as stdout and stderr and a read-write fd 3, and keeps none itself", async () => {
    const { dir, logPath, keeper } = await setup();
    const fifo = await keeper.prepare({ name: "a", log: logPath, maxBytes: 1 << 20, keep: 1 });
    const { agent } = await flood(dir, fifo, {
      FLOOD_RATE: "1000",
      TICK_MS: "100",
      FLOOD_BYTES: "100",
    });
    expect(await readlink(`/proc/${agent.pid}/fd/1`)).toBe(fifo);
    expect(await readlink(`/proc/${agent.pid}/fd/2`)).toBe(fifo);
    expect(await readlink(`/proc/${agent.pid}/fd/3`)).toBe(fifo);
    const accessMode = (fd: number): number =>
      Number.parseInt(
        /flags:\s+(\d+)/.exec(readFileSync(`/proc/${agent.pid}/fdinfo/${fd}`, "utf8"))?.[1] ?? "0",
        8,
      ) & 0o3;
    expect([accessMode(1), accessMode(3)]).toEqual([0o1, 0o2]); // O_WRONLY, O_RDWR
    const own = execFileSync("ls", ["-l", "/proc/self/fd"], { encoding: "utf8" });
    expect(own).not.toContain(fifo);
    process.kill(agent.pid, "SIGTERM");
    await agent.exited;
  });

  it("restarts a keeper that dies; the agent neither blocks long nor gets EPIPE, and loses at most one read", async () => {
    const { dir, logPath, keeper } = await setup();
    // Large enough to keep everything: the whole sequence can be checked.
    const fifo = await keeper.prepare({ name: "a", log: logPath, maxBytes: 8 << 20, keep: 3 });
    const first = keeper.identity?.pid ?? 0;
    const { agent, stats } = await flood(dir, fifo, { FLOOD_RATE: "4000000", FLOOD_SECONDS: "3" });
    await waitUntil(() => diskUsage(logPath).bytes > 2_000_000, "2 MB are written");
    process.kill(first, "SIGKILL");
    await waitUntil(
      () => (keeper.identity?.pid ?? first) !== first,
      "another keeper serves the stream",
    );
    await agent.exited;
    const final = stats();
    await waitUntil(
      () => checkSequence(readLogLines(logPath)).last === final.lines - 1,
      "the new keeper wrote the agent's last line",
    );
    const check = checkSequence(readLogLines(logPath));
    expect(check).toMatchObject({ repeats: 0, other: [], first: 0 });
    const missingBytes = check.gaps.reduce((sum, gap) => sum + gap.missing * 100, 0);
    expect(missingBytes).toBeLessThanOrEqual(64 * 1024 + 100);
    expect(final).toMatchObject({ errors: 0 });
    expect(final.maxWriteMs).toBeLessThan(5_000);
  });

  it("replaces a keeper of another build: the old one lets go of every FIFO before the new one reads", async () => {
    const { dir, stateDir, logPath } = await setup();
    const old = newKeeper(stateDir, "build-A");
    const fifo = await old.prepare({ name: "a", log: logPath, maxBytes: 8 << 20, keep: 3 });
    const oldIdentity = old.identity;
    const { agent, stats } = await flood(dir, fifo, { FLOOD_RATE: "3000000", FLOOD_SECONDS: "2" });
    await waitUntil(() => diskUsage(logPath).bytes > 1_000_000, "1 MB is written");
    old.detach(); // the old daemon is gone; its keeper runs on
    expect(isSameProcess(oldIdentity?.pid ?? 0, oldIdentity?.startTimeTicks ?? 0)).toBe(true);
    const replacement = newKeeper(stateDir, "build-B");
    await replacement.start();
    expect(isSameProcess(oldIdentity?.pid ?? 0, oldIdentity?.startTimeTicks ?? 0)).toBe(false);
    expect(replacement.identity).toMatchObject({ build: "build-B" });
    await agent.exited;
    const final = stats();
    await waitUntil(
      () => checkSequence(readLogLines(logPath)).last === final.lines - 1,
      "the new keeper wrote the agent's last line",
    );
    // The handover drained the pipe: nothing lost, nothing twice.
    expect(checkSequence(readLogLines(logPath))).toMatchObject({
      first: 0,
      gaps: [],
      repeats: 0,
      other: [],
    });
    expect(final).toMatchObject({ errors: 0 });
  });

  it("is left running by a detach and connected to again by the next daemon of the same build", async () => {
    const { dir, stateDir, logPath, keeper } = await setup();
    const fifo = await keeper.prepare({ name: "a", log: logPath, maxBytes: 1 << 20, keep: 1 });
    const identity = keeper.identity;
    keeper.detach();
    const { agent } = await flood(dir, fifo, { FLOOD_BYTES: "1000" });
    await agent.exited;
    await waitUntil(() => diskUsage(logPath).bytes === 1000, "the detached keeper wrote it all");
    const next = newKeeper(stateDir);
    await next.start();
    expect(next.identity).toEqual(identity);
    // The next daemon knows the stream from the keeper's state file.
    expect((await next.stats()).a).toMatchObject({ written: 1000 });
    await next.stop();
    expect(isSameProcess(identity?.pid ?? 0, identity?.startTimeTicks ?? 0)).toBe(false);
  });

  it("reads its streams from its state file when it starts again while no daemon runs", async () => {
    const { dir, stateDir, logPath, keeper } = await setup();
    const fifo = await keeper.prepare({ name: "a", log: logPath, maxBytes: 1 << 20, keep: 1 });
    const first = keeper.identity;
    keeper.detach();
    process.kill(first?.pid ?? 0, "SIGKILL");
    await waitUntil(
      () => !isSameProcess(first?.pid ?? 0, first?.startTimeTicks ?? 0),
      "the keeper is gone",
    );
    // A new daemon that knows nothing of agent a starts a keeper: keeper.json names the stream.
    const next = newKeeper(stateDir);
    await next.start();
    expect(next.identity?.pid).not.toBe(first?.pid);
    const { agent } = await flood(dir, fifo, { FLOOD_BYTES: "5000" });
    await agent.exited;
    await waitUntil(() => diskUsage(logPath).bytes === 5000, "the new keeper wrote it all");
    expect((await next.stats()).a).toMatchObject({ written: 5000, dropped: 0 });
  });

  it("lets only one keeper serve a state dir", async () => {
    const { stateDir, keeper } = await setup();
    await keeper.start();
    const second = await spawnKeeper({
      paths: keeper.paths,
      stateDir,
      build: "another",
      startTimeoutMs: 10_000,
    });
    expect(second).toBe("already-running");
    expect(await keeper.stats()).toEqual({});
  });

  it("drains and forgets a removed stream, deleting its FIFO but not its logs", async () => {
    const { dir, logPath, keeper } = await setup();
    const fifo = await keeper.prepare({ name: "a", log: logPath, maxBytes: 1 << 20, keep: 1 });
    const { agent } = await flood(dir, fifo, { FLOOD_BYTES: "3000" });
    await agent.exited;
    await keeper.remove("a");
    expect(await keeper.stats()).toEqual({});
    expect(diskUsage(logPath).bytes).toBe(3000);
    expect(() => statSync(fifo)).toThrow(/ENOENT/);
  });

  it("refuses a stream whose log is a symbolic link, leaving the file it points to alone", async () => {
    const { dir, logPath, keeper } = await setup();
    const victim = join(dir, "victim");
    await writeFile(victim, "precious\n");
    await mkdir(join(dir, "state", "logs"), { recursive: true });
    await symlink(victim, logPath);
    await expect(
      keeper.prepare({ name: "a", log: logPath, maxBytes: 1 << 20, keep: 1 }),
    ).rejects.toThrow(
      `output keeper: ${logPath} is a symbolic link, not a regular file: refusing to write through it`,
    );
    expect(await keeper.stats()).toEqual({});
    expect(await readFile(victim, "utf8")).toBe("precious\n");
  });

  it("writes its own files and the agents' FIFOs afresh, never through a symbolic link", async () => {
    const { dir, stateDir, logPath, keeper } = await setup();
    const victim = join(dir, "victim");
    await writeFile(victim, "precious\n");
    const keeperDir = join(stateDir, "keeper");
    await mkdir(join(keeperDir, "fifo"), { recursive: true, mode: 0o700 });
    for (const name of ["keeper.json.tmp", "keeper.stderr", "fifo/a"]) {
      await symlink(victim, join(keeperDir, name));
    }
    // A FIFO path replaced by a regular file is made a FIFO again too.
    await writeFile(join(keeperDir, "fifo", "b"), "not a FIFO\n");
    const fifo = await keeper.prepare({ name: "a", log: logPath, maxBytes: 1 << 20, keep: 1 });
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    const other = await keeper.prepare({
      name: "b",
      log: join(stateDir, "logs", "b.log"),
      maxBytes: 1 << 20,
      keep: 1,
    });
    expect(lstatSync(other).isFIFO()).toBe(true);
    expect(lstatSync(join(keeperDir, "keeper.stderr")).isFile()).toBe(true);
    expect(JSON.parse(await readFile(join(keeperDir, "keeper.json"), "utf8"))).toMatchObject({
      streams: [{ name: "a" }, { name: "b" }],
    });
    expect(await readFile(victim, "utf8")).toBe("precious\n");
  });

  describe.skipIf(!canMountTmpfs())("on a disk that fills up", () => {
    it("drops what it cannot write without blocking the agent, and says how much once it can", async () => {
      const { dir, logPath, keeper } = await setup();
      const logs = join(dir, "state", "logs");
      await mkdir(logs, { recursive: true });
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", logs]);
      cleanups.push(() => {
        try {
          execFileSync("umount", [logs], { stdio: "ignore" });
        } catch {
          // Not mounted any more.
        }
      });
      const filler = join(logs, "filler");
      await writeFile(filler, Buffer.alloc(700 * 1024));
      const fifo = await keeper.prepare({ name: "a", log: logPath, maxBytes: 128 * 1024, keep: 3 });
      const { agent, stats } = await flood(dir, fifo, {
        FLOOD_RATE: "2000000",
        FLOOD_BYTES: "600000",
        TICK_MS: "50",
      });
      await waitUntil(() => !stats().flooding, "the agent's flood is over", 20_000);
      const dropped = (await keeper.stats()).a?.dropped ?? 0;
      expect(dropped).toBeGreaterThan(0);
      // The disk was full, yet the agent wrote everything without waiting.
      expect(stats()).toMatchObject({ written: 600_000, errors: 0 });
      expect(stats().maxWriteMs).toBeLessThan(1_000);
      await rm(filler);
      await waitUntil(
        () => readLogLines(logPath).some((line) => line.startsWith(DROPPED_MARKER)),
        "the log says what was dropped",
      );
      process.kill(agent.pid, "SIGTERM");
      await agent.exited;
      const final = stats();
      const accounted = async (): Promise<boolean> => {
        const a = (await keeper.stats()).a;
        return (a?.written ?? 0) + (a?.dropped ?? 0) === final.written;
      };
      for (let i = 0; i < 200 && !(await accounted()); i++) await delay(25);
      const a = (await keeper.stats()).a;
      expect((a?.written ?? 0) + (a?.dropped ?? 0)).toBe(final.written);
      const markers = checkSequence(readLogLines(logPath)).markers;
      const reported = markers.reduce(
        (sum, line) => sum + Number(/dropped (\d+) bytes/.exec(line)?.[1] ?? 0),
        0,
      );
      expect(markers[0]).toMatch(
        /^\[atoll-deploy\] dropped \d+ bytes of output: ENOSPC: no space left on device$/,
      );
      expect(reported).toBe(a?.dropped);
      await keeper.stop(); // before the unmount: it holds the log open
    });
  });
});

/** Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, as on the CI machine). */
function canMountTmpfs(): boolean {
  const dir = mkdtempSync(join(os.tmpdir(), "atoll-mount-check-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" });
    execFileSync("umount", [dir], { stdio: "ignore" });
    return true;
  } catch {
    process.stderr.write("skipping the disk-full test: this process may not mount a tmpfs\n");
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
