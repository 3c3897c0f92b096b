/**
 * Facts about processes read straight from Linux `/proc`: start times (to tell a live agent from a
 * recycled pid), users and command lines, environments, process-group membership and resident
 * memory. Sockets and their holders are in `proc-sockets.ts`.
 * Every function is synchronous and cheap except the whole-`/proc` scans, which callers run at
 * most every few seconds or on error paths.
 */

import { readdirSync, readFileSync, statSync } from "node:fs";

/** The fields of `/proc/<pid>/stat` this project uses. */
export interface ProcStat {
  readonly pid: number;
  /** Executable name as the kernel keeps it (at most 15 bytes; may hold spaces and parentheses). */
  readonly comm: string;
  /** One-letter state: R, S, D, Z (zombie), T, t, X, I... */
  readonly state: string;
  readonly ppid: number;
  /** Process group id. */
  readonly pgrp: number;
  /** Start time in clock ticks since boot (field 22); stable for the life of the process. */
  readonly startTimeTicks: number;
  /** Resident set size in pages (field 24). */
  readonly rssPages: number;
}

/**
 * Parses the text of `/proc/<pid>/stat`. `comm` (field 2) is wrapped in parentheses but may itself
 * contain spaces and parentheses, so it runs from the first `(` to the *last* `)`; every later field
 * is space-separated. Returns undefined for text that does not have that shape.
 */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 1 || close < open) return undefined;
  const pid = Number(text.slice(0, open).trim());
  // After ") " come fields 3, 4, 5, ...: field N sits at index N - 3.
  const rest = text
    .slice(close + 1)
    .trim()
    .split(" ");
  const state = rest[0];
  const ppid = Number(rest[1]);
  const pgrp = Number(rest[2]);
  const startTimeTicks = Number(rest[22 - 3]);
  const rssPages = Number(rest[24 - 3]);
  if (
    state === undefined ||
    !Number.isSafeInteger(pid) ||
    !Number.isSafeInteger(ppid) ||
    !Number.isSafeInteger(pgrp) ||
    !Number.isSafeInteger(startTimeTicks) ||
    !Number.isSafeInteger(rssPages)
  ) {
    return undefined;
  }
  return { pid, comm: text.slice(open + 1, close), state, ppid, pgrp, startTimeTicks, rssPages };
}

/** Reads and parses `/proc/<pid>/stat`; undefined when the process does not exist (or vanished). */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    // ENOENT/ESRCH: the process is gone; any other error means we cannot know, which callers
    // treat the same way ("no facts").
    return undefined;
  }
  return parseProcStat(text);
}

/**
 * Start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or undefined when
 * no such process exists. Together with the pid it identifies a process across pid reuse.
 */
export function readProcessStartTime(pid: number): number | undefined {
  return readProcStat(pid)?.startTimeTicks;
}

/** Process group of `pid`, or undefined when no such process exists. */
export function readProcessGroup(pid: number): number | undefined {
  return readProcStat(pid)?.pgrp;
}

function isDead(state: string): boolean {
  // Z: zombie (exited, not yet reaped); X: dead. Neither runs code or holds a port.
  return state === "Z" || state === "X";
}

/**
 * True when `pid` is still the process that started at `startTimeTicks` and has not exited
 * (a zombie is not "the same live process"). Used to adopt agents after a daemon restart.
 */
export function isSameProcess(pid: number, startTimeTicks: number): boolean {
  const stat = readProcStat(pid);
  return stat !== undefined && stat.startTimeTicks === startTimeTicks && !isDead(stat.state);
}

/**
 * True when a process with this pid exists and has not exited. A zombie counts as dead. Falls back
 * to `kill(pid, 0)` alone when `/proc` cannot be read.
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0 || !signalZero(pid)) return false;
  const stat = readProcStat(pid);
  // No stat although kill(pid, 0) succeeded: it exited just now, or /proc is hidden; ask again.
  return stat === undefined ? signalZero(pid) : !isDead(stat.state);
}

/** kill(pid, 0): true when the process (or, for a negative id, the group) exists, zombies included. */
function signalZero(id: number): boolean {
  try {
    process.kill(id, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone we may not signal.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Numeric entries of `/proc`, i.e. every visible pid; empty when `/proc` is unreadable. */
export function listPids(): number[] {
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const name of names) {
    const pid = Number(name);
    if (Number.isSafeInteger(pid) && pid > 0) pids.push(pid);
  }
  return pids;
}

/** Live (non-zombie) processes whose process group is `pgid`, by scanning `/proc/<pid>/stat`. */
export function listGroupMembers(pgid: number): ProcStat[] {
  const members: ProcStat[] = [];
  for (const pid of listPids()) {
    const stat = readProcStat(pid);
    if (stat !== undefined && stat.pgrp === pgid && !isDead(stat.state)) members.push(stat);
  }
  return members;
}

/**
 * The kernel page size in bytes, read once at load from the auxiliary vector (`AT_PAGESZ` in
 * `/proc/self/auxv`) rather than by spawning `getconf`. Falls back to 4096, the page size of
 * x86-64 and of most arm64 kernels, when the vector cannot be read.
 */
export const PAGE_SIZE_BYTES: number = readAuxvPageSize() ?? 4096;

function readAuxvPageSize(): number | undefined {
  const AT_PAGESZ = 6n;
  try {
    const auxv = readFileSync("/proc/self/auxv");
    // 64-bit little/big endian pairs of (type, value); this runs on the host's own ABI.
    const little = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
    for (let offset = 0; offset + 16 <= auxv.length; offset += 16) {
      const type = little ? auxv.readBigUInt64LE(offset) : auxv.readBigUInt64BE(offset);
      if (type === AT_PAGESZ) {
        const value = little ? auxv.readBigUInt64LE(offset + 8) : auxv.readBigUInt64BE(offset + 8);
        return Number(value);
      }
    }
  } catch {
    // Not Linux or /proc hidden: the caller falls back to a sane default.
  }
  return undefined;
}

/**
 * Wall-clock time (ms since epoch) of a process start time in clock ticks since boot: boot time
 * (`btime` in `/proc/stat`) plus the ticks at USER_HZ, which Linux fixes at 100 on every
 * mainstream architecture (sysconf is out of Node's reach). Undefined without `/proc/stat`.
 */
export function startTimeTicksToMs(startTimeTicks: number): number | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/stat", "utf8");
  } catch {
    return undefined;
  }
  const btime = /^btime (\d+)$/m.exec(text)?.[1];
  if (btime === undefined) return undefined;
  return Number(btime) * 1000 + startTimeTicks * (1000 / USER_HZ);
}

const USER_HZ = 100;

/** The environment `pid` was started with (`/proc/<pid>/environ`); undefined when unreadable. */
export function readProcessEnvironment(pid: number): Map<string, string> | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/environ`, "utf8");
  } catch {
    return undefined;
  }
  const env = new Map<string, string>();
  for (const entry of text.split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/** The raw `/proc/<pid>/environ` (NUL-separated `KEY=value` entries); undefined when unreadable. */
function readEnvironBytes(pid: number): Buffer | undefined {
  try {
    return readFileSync(`/proc/${pid}/environ`);
  } catch {
    // Gone, or another user's process (without root): nothing can be said of it.
    return undefined;
  }
}

/** True when the NUL-separated environment block `environ` holds exactly `entry` ("K=v"). */
function environHas(environ: Buffer, entry: Buffer): boolean {
  for (let at = environ.indexOf(entry); at !== -1; at = environ.indexOf(entry, at + 1)) {
    const end = at + entry.length;
    if ((at === 0 || environ[at - 1] === 0) && (end === environ.length || environ[end] === 0)) {
      return true;
    }
  }
  return false;
}

/** Real and effective user ids of a process (`Uid:` of `/proc/<pid>/status`). */
export interface ProcessUids {
  readonly real: number;
  readonly effective: number;
}

/** Parses the `Uid:` line of `/proc/<pid>/status` text; undefined without one. */
export function parseStatusUids(text: string): ProcessUids | undefined {
  const match = /^Uid:\s+(\d+)\s+(\d+)/m.exec(text);
  if (match?.[1] === undefined || match[2] === undefined) return undefined;
  return { real: Number(match[1]), effective: Number(match[2]) };
}

/** The user ids `pid` runs as; undefined when it does not exist (or vanished). */
export function readProcessUids(pid: number): ProcessUids | undefined {
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    return parseStatusUids(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return undefined;
  }
}

/** True when `pid` runs as `uid`, both real and effective (a setuid program does not). */
export function runsAs(pid: number, uid: number): boolean {
  const uids = readProcessUids(pid);
  return uids !== undefined && uids.real === uid && uids.effective === uid;
}

/**
 * The argument vector of `pid` (`/proc/<pid>/cmdline`); undefined when it is gone, and empty for
 * a zombie or a kernel thread.
 */
export function readProcessCommandLine(pid: number): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return undefined;
  }
  if (text === "") return [];
  const args = text.split("\0");
  if (args.at(-1) === "") args.pop();
  return args;
}

/**
 * True when `actual` (a process's command line) is `expected` (the argv it was started with),
 * allowing for a prefix the kernel or a launcher put before it: `#!` interpreters (`python3
 * /path/agent.py ...`, `/usr/bin/env` exec'ing one) and the daemon's cgroup trampoline (`/bin/sh
 * -c ... <cgroup> <argv...>`) all end with the argv as given. A program that rewrote its own
 * command line (`process.title`, `setproctitle`) no longer matches.
 */
export function commandLineMatches(
  expected: readonly string[],
  actual: readonly string[],
): boolean {
  if (expected.length === 0 || actual.length < expected.length) return false;
  const offset = actual.length - expected.length;
  return expected.every((arg, i) => actual[offset + i] === arg);
}

/**
 * Live processes carrying `key=value` in their environment and running as `uid` (real and
 * effective), from one scan of `/proc`: the members of an agent's tree that left its process
 * group (`setsid`), which inherit the agent's environment. The owner of `/proc/<pid>` (the
 * effective uid) is checked before the environment is read, so other users' processes cost one
 * stat each.
 */
export function findProcessesWithEnv(key: string, value: string, uid: number): ProcStat[] {
  const entry = Buffer.from(`${key}=${value}`);
  const found: ProcStat[] = [];
  for (const pid of listPids()) {
    if (statSync(`/proc/${pid}`, { throwIfNoEntry: false })?.uid !== uid) continue;
    const environ = readEnvironBytes(pid);
    if (environ === undefined || !environHas(environ, entry) || !runsAs(pid, uid)) continue;
    const stat = readProcStat(pid);
    if (stat !== undefined && !isDead(stat.state)) found.push(stat);
  }
  return found;
}

/** A live process-group leader and the environment it was started with. */
export interface LeaderWithEnvironment {
  readonly stat: ProcStat;
  readonly env: ReadonlyMap<string, string>;
}

/**
 * Live process-group leaders (pid = pgid) whose environment has `key` set to `value`, from one
 * scan of `/proc`; with `uid`, only those running as that user (real and effective), so that a
 * process of another user copying the variable is never taken for one of ours.
 */
export function findGroupLeadersWithEnv(
  key: string,
  value: string,
  options: { readonly uid?: number } = {},
): LeaderWithEnvironment[] {
  const found: LeaderWithEnvironment[] = [];
  for (const pid of listPids()) {
    const stat = readProcStat(pid);
    if (stat === undefined || stat.pgrp !== pid || isDead(stat.state)) continue;
    const env = readProcessEnvironment(pid);
    if (env?.get(key) !== value) continue;
    if (options.uid !== undefined && !runsAs(pid, options.uid)) continue;
    found.push({ stat, env });
  }
  return found;
}

/** Resident pages of every live process, summed per process group, from one scan of `/proc`. */
function residentPagesByGroup(): Map<number, number> {
  const pages = new Map<number, number>();
  for (const pid of listPids()) {
    const stat = readProcStat(pid);
    if (stat === undefined || isDead(stat.state)) continue;
    pages.set(stat.pgrp, (pages.get(stat.pgrp) ?? 0) + stat.rssPages);
  }
  return pages;
}

/**
 * A reader of the resident memory in bytes of every live process in a process group (an agent
 * and all its helpers): the sum of their RSS pages times the page size, 0 for a group with no
 * member. Shared pages are counted once per process, so this overestimates slightly; it is a
 * limit check, not an accounting tool.
 *
 * One scan of `/proc` serves every group for `maxAgeMs` (default 1 s): it reads each process's
 * stat file, milliseconds of blocking I/O with a few hundred processes, and every agent's health
 * tick asks for its own group. A limit check a second late is still a limit check.
 */
export function createGroupMemoryReader(
  maxAgeMs = 1_000,
  now: () => number = () => performance.now(),
): (pgid: number) => number {
  let scannedAt = Number.NEGATIVE_INFINITY;
  let pages = new Map<number, number>();
  return (pgid) => {
    if (now() - scannedAt >= maxAgeMs) {
      pages = residentPagesByGroup();
      scannedAt = now();
    }
    return (pages.get(pgid) ?? 0) * PAGE_SIZE_BYTES;
  };
}
