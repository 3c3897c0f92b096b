/**
 * Checks of agent logs for tests: what the files of one log hold on disk (sampled every 50 ms
 * while an agent floods), and whether the numbered lines of tests/fixtures/flood-agent.mjs
 * are all there, in order, exactly once.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const FLOOD_AGENT = fileURLToPath(new URL("../fixtures/flood-agent.mjs", import.meta.url));

/** The files of the log `logPath` (`<log>`, `<log>.1`, …), oldest first. */
export function logFiles(logPath: string): string[] {
  const dir = path.dirname(logPath);
  const base = path.basename(logPath);
  const indices: number[] = [];
  let live = false;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return []; // no logs directory yet
  }
  for (const name of names) {
    if (name === base) live = true;
    const match = new RegExp(`^${base.replaceAll(".", "\\.")}\\.(\\d+)$`).exec(name);
    if (match?.[1] !== undefined) indices.push(Number(match[1]));
  }
  indices.sort((a, b) => b - a);
  return [...indices.map((i) => `${logPath}.${i}`), ...(live ? [logPath] : [])];
}

/** Bytes on disk of a log's files: their sizes, and their allocated blocks. */
export function diskUsage(logPath: string): { bytes: number; allocated: number; files: number } {
  let bytes = 0;
  let allocated = 0;
  let files = 0;
  for (const file of logFiles(logPath)) {
    try {
      const s = statSync(file);
      bytes += s.size;
      allocated += s.blocks * 512;
      files += 1;
    } catch {
      // Renamed or deleted between the listing and the stat: counted under its new name.
    }
  }
  return { bytes, allocated, files };
}

/** Samples {@link diskUsage} every `intervalMs` (default 50) until stopped; keeps the peaks. */
export class DiskSampler {
  peakBytes = 0;
  peakAllocated = 0;
  peakFiles = 0;
  samples = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(logPath: string, intervalMs = 50) {
    const sample = (): void => {
      const usage = diskUsage(logPath);
      this.peakBytes = Math.max(this.peakBytes, usage.bytes);
      this.peakAllocated = Math.max(this.peakAllocated, usage.allocated);
      this.peakFiles = Math.max(this.peakFiles, usage.files);
      this.samples += 1;
    };
    sample();
    this.#timer = setInterval(sample, intervalMs);
  }

  stop(): this {
    clearInterval(this.#timer);
    return this;
  }
}

/** What the numbered lines of a log say. */
export interface SequenceCheck {
  /** First and last sequence numbers found (-1 when none). */
  readonly first: number;
  readonly last: number;
  readonly lines: number;
  /** Runs of missing numbers: after `after`, `missing` lines are not there. */
  readonly gaps: { after: number; missing: number }[];
  /** Numbers seen again (out of order or twice). */
  readonly repeats: number;
  /** Lines that are neither numbered nor markers (broken lines). */
  readonly other: string[];
  /** Lines starting with `[atoll-deploy]`. */
  readonly markers: string[];
}

const NUMBERED = /^(\d{12}) x+$/;

/** Checks numbered lines (as yielded by a follower, or read from files). */
export function checkSequence(lines: Iterable<string>): SequenceCheck {
  let first = -1;
  let last = -1;
  let count = 0;
  let repeats = 0;
  const gaps: { after: number; missing: number }[] = [];
  const other: string[] = [];
  const markers: string[] = [];
  for (const line of lines) {
    if (line === "") continue;
    if (line.startsWith("[atoll-deploy]")) {
      markers.push(line);
      continue;
    }
    const match = NUMBERED.exec(line);
    if (match?.[1] === undefined) {
      other.push(line.slice(0, 80));
      continue;
    }
    const seq = Number(match[1]);
    count += 1;
    if (first === -1) first = seq;
    else if (seq <= last) repeats += 1;
    else if (seq > last + 1) gaps.push({ after: last, missing: seq - last - 1 });
    if (seq > last) last = seq;
  }
  return { first, last, lines: count, gaps, repeats, other, markers };
}

/** The lines of every file of a log, oldest first. */
export function readLogLines(logPath: string): string[] {
  return logFiles(logPath)
    .map((file) => readFileSync(file, "latin1"))
    .join("")
    .split("\n");
}
