/**
 * Linux /proc facts the harness needs: resident memory, liveness (a zombie is not alive), and a
 * scan for every process carrying this run's marker, which is how leaks are found without ever
 * touching processes the harness did not start.
 */
import { readdirSync, readFileSync } from "node:fs";
import { RUN_MARKER_VAR } from "./fixture.ts";
import { delay, nowMs } from "./timing.ts";

interface Stat {
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
}

function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    // Gone (or vanished while reading): no facts.
    return undefined;
  }
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: rest[0] ?? "?", ppid: Number(rest[1]), pgrp: Number(rest[2]) };
}

/** True while `pid` exists and is more than a zombie. */
export function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
}

/** Process group of `pid`, or undefined when it is gone. */
export function processGroup(pid: number): number | undefined {
  return readStat(pid)?.pgrp;
}

/** Resident memory of `pid` in bytes (VmRSS), or undefined when it is gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    // Gone.
    return undefined;
  }
}

/** Command line of `pid` joined by spaces; "" when it is gone. */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    // Gone.
    return "";
  }
}

export interface MarkedProcess {
  readonly pid: number;
  readonly pgrp: number;
  readonly cmd: string;
}

/**
 * Every live process whose environment holds `ATOLL_BENCH_RUN=<marker>` or
 * `ATOLL_BENCH_RUN=<marker>.<anything>` (each tool marks its agents `<run>.<tool>`).
 */
export function findMarkedProcesses(marker: string): MarkedProcess[] {
  const exact = `\0${RUN_MARKER_VAR}=${marker}\0`;
  const prefix = `\0${RUN_MARKER_VAR}=${marker}.`;
  const found: MarkedProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isSafeInteger(pid) || pid === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, "latin1");
    } catch {
      // Vanished or unreadable: not ours to judge.
      continue;
    }
    const padded = `\0${environ}\0`;
    if (!padded.includes(exact) && !padded.includes(prefix)) continue;
    const stat = readStat(pid);
    if (stat === undefined || stat.state === "Z" || stat.state === "X") continue;
    found.push({ pid, pgrp: stat.pgrp, cmd: commandLine(pid) });
  }
  return found;
}

/** Resolves true when none of `pids` is alive, false after `timeoutMs`. */
export async function waitGone(
  pids: readonly number[],
  timeoutMs: number,
  intervalMs = 10,
): Promise<boolean> {
  const deadline = nowMs() + timeoutMs;
  let left = pids.filter(isAlive);
  while (left.length > 0) {
    if (nowMs() >= deadline) return false;
    await delay(intervalMs);
    left = left.filter(isAlive);
  }
  return true;
}

/** SIGKILL to `pid`'s group (or to `pid` alone); never throws. */
export function killHard(pid: number, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** CPU time `pid` has used (user + system), in seconds; undefined when it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    // Gone.
    return undefined;
  }
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of the stat line (utime, stime), in clock ticks (USER_HZ, 100 on Linux).
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

/** Live processes whose environment has `name=value` (for helpers a tool starts itself). */
export function findProcessesWithEnv(name: string, value: string): number[] {
  const wanted = `\0${name}=${value}\0`;
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isSafeInteger(pid) || pid === process.pid) continue;
    try {
      if (
        `\0${readFileSync(`/proc/${pid}/environ`, "latin1")}\0`.includes(wanted) &&
        isAlive(pid)
      ) {
        found.push(pid);
      }
    } catch {
      // Vanished or unreadable.
    }
  }
  return found;
}

/** Existing files of `dir` named `base` or `base.<n>` (a log and its rotated files). */
export function rotatedFiles(dir: string, base: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter(
      (n) => n === base || (n.startsWith(`${base}.`) && /^\d+$/.test(n.slice(base.length + 1))),
    )
    .map((n) => `${dir}/${n}`);
}
