/**
 * Agent log files (SPEC §4): `<logs dir>/<name>.log`, written by the agent itself through an
 * inherited O_APPEND descriptor, rotated by copy-truncate, read back by tail and follow.
 *
 * Why copy-truncate: the agent holds the file open, so renaming it away would leave the agent
 * writing into the renamed file forever. Copying it to `.1` and truncating it in place keeps the
 * agent's descriptor valid, and O_APPEND makes its next write land at the new end (offset 0)
 * instead of leaving a hole. The price is a tiny loss window: bytes the agent appends between the
 * last copy read and the truncate are lost (microseconds; a few lines at worst).
 */

import { constants, mkdirSync, openSync, watch } from "node:fs";
import { appendFile, copyFile, open, rename, rm, stat, truncate } from "node:fs/promises";
import { dirname, join } from "node:path";

/** 10 MiB: default size at which a log is rotated. */
export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
/** Default number of rotated files kept (`.1` newest .. `.3` oldest). */
export const DEFAULT_LOG_KEEP = 3;
/** 16 KiB: default cap of one line returned by tail or follow; longer lines are cut. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;

const NEWLINE = 0x0a;

/** Path of the log of agent `name` in `dir`: `<dir>/<name>.log`. Agent names are file-name safe. */
export function agentLogPath(dir: string, name: string): string {
  return join(dir, `${name}.log`);
}

/**
 * Opens (creating it and its directory if needed, mode 0640) `logPath` for appending and returns
 * the descriptor, to be inherited by an agent as its stdout and stderr. The caller closes it.
 * @throws the fs error (EACCES, ENOSPC, EISDIR...).
 */
export function openLogForAppend(logPath: string): number {
  mkdirSync(dirname(logPath), { recursive: true });
  return openSync(logPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o640);
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ENOENT";
}

/** Options of {@link rotateIfNeeded}. */
export interface RotateOptions {
  /** Rotate when the file is at least this large. Default 10 MiB. */
  readonly maxBytes?: number;
  /** Rotated copies kept (`.1`..`.keep`); 0 only truncates. Default 3. */
  readonly keep?: number;
}

/**
 * Rotates `logPath` by copy-truncate when it has reached `maxBytes`: `.2` → `.3`, `.1` → `.2`, the
 * file is copied to `.1` and truncated to 0 while the agent keeps writing to it (see the module
 * comment for the loss window). Not safe to run twice at once on the same path ({@link LogRotator}
 * runs its checks one after the other).
 * @returns true when the file was rotated; false when it is smaller or missing.
 * @throws fs errors other than a missing file.
 */
export async function rotateIfNeeded(
  logPath: string,
  options: RotateOptions = {},
): Promise<boolean> {
  const maxBytes = options.maxBytes ?? DEFAULT_LOG_MAX_BYTES;
  const keep = options.keep ?? DEFAULT_LOG_KEEP;
  let size: number;
  try {
    size = (await stat(logPath)).size;
  } catch (error) {
    if (isMissing(error)) return false;
    throw error;
  }
  if (size < maxBytes) return false;

  if (keep > 0) {
    await rm(`${logPath}.${keep}`, { force: true });
    for (let index = keep - 1; index >= 1; index--) {
      try {
        await rename(`${logPath}.${index}`, `${logPath}.${index + 1}`);
      } catch (error) {
        if (!isMissing(error)) throw error;
      }
    }
    const rotated = `${logPath}.1`;
    await copyFile(logPath, rotated);
    // The agent kept writing during the copy: append what came after, then truncate at once, so
    // the window in which output is lost shrinks to the gap between this read and the truncate.
    const copied = (await stat(rotated)).size;
    const tail = await readRange(logPath, copied, Number.POSITIVE_INFINITY);
    if (tail.length > 0) await appendFile(rotated, tail);
  }
  await truncate(logPath, 0);
  return true;
}

/** Reads bytes [start, end) of a file (to its end when `end` is past it). */
async function readRange(path: string, start: number, end: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const chunks: Buffer[] = [];
    let position = start;
    while (position < end) {
      const length = Math.min(64 * 1024, end - position);
      const buffer = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      if (bytesRead === 0) break;
      chunks.push(buffer.subarray(0, bytesRead));
      position += bytesRead;
    }
    return Buffer.concat(chunks);
  } finally {
    await handle.close();
  }
}

/** Options of {@link LogRotator}. */
export interface LogRotatorOptions extends RotateOptions {
  /** Period between checks of every registered log, in milliseconds. Default 10 000. */
  readonly intervalMs?: number;
  /** Told of every rotation (for logging, and for tests to wait on). */
  readonly onRotate?: (logPath: string) => void;
  /** Told of a failed check; the rotator carries on. Without it errors are dropped. */
  readonly onError?: (logPath: string, error: unknown) => void;
}

/**
 * Checks a set of log files every `intervalMs` and rotates those that reached `maxBytes`. Checks
 * run one after the other, never overlapping. Started with {@link run}, stopped by its signal.
 */
export class LogRotator {
  readonly #paths = new Set<string>();
  readonly #intervalMs: number;
  readonly #rotateOptions: RotateOptions;
  readonly #onRotate: ((logPath: string) => void) | undefined;
  readonly #onError: ((logPath: string, error: unknown) => void) | undefined;

  constructor(options: LogRotatorOptions = {}) {
    this.#intervalMs = options.intervalMs ?? 10_000;
    this.#rotateOptions = {
      maxBytes: options.maxBytes ?? DEFAULT_LOG_MAX_BYTES,
      keep: options.keep ?? DEFAULT_LOG_KEEP,
    };
    this.#onRotate = options.onRotate;
    this.#onError = options.onError;
  }

  /** Registers a log file to be checked (idempotent). */
  add(logPath: string): void {
    this.#paths.add(logPath);
  }

  /** Stops checking a log file. */
  delete(logPath: string): void {
    this.#paths.delete(logPath);
  }

  /** Checks every registered file once now. Never rejects: failures go to `onError`. */
  async checkNow(): Promise<void> {
    for (const logPath of [...this.#paths]) {
      try {
        if (await rotateIfNeeded(logPath, this.#rotateOptions)) this.#onRotate?.(logPath);
      } catch (error) {
        this.#onError?.(logPath, error);
      }
    }
  }

  /**
   * Checks every `intervalMs` until `signal` aborts; resolves (never rejects) once stopped, after
   * any check in progress has finished, with no timer left behind.
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await abortableDelay(this.#intervalMs, signal);
      if (signal.aborted) break;
      await this.checkNow();
    }
  }
}

/** Resolves after `ms` or as soon as `signal` aborts, whichever comes first; clears its timer. */
function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Splits complete lines out of `buffer`; returns them and the unfinished remainder. */
function splitLines(
  buffer: Buffer,
  maxLineBytes: number,
): { lines: string[]; rest: Buffer<ArrayBufferLike> } {
  const lines: string[] = [];
  let start = 0;
  for (let index = buffer.indexOf(NEWLINE); index !== -1; index = buffer.indexOf(NEWLINE, start)) {
    lines.push(decodeLine(buffer.subarray(start, index), maxLineBytes));
    start = index + 1;
  }
  return { lines, rest: buffer.subarray(start) };
}

/** UTF-8 decoding of one line without its newline (and CR), cut to `maxLineBytes`. */
function decodeLine(bytes: Buffer, maxLineBytes: number): string {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  // Cutting may split a multi-byte character; the decoder turns its bytes into U+FFFD.
  return bytes.subarray(0, Math.min(end, maxLineBytes)).toString("utf8");
}

/** The end of a log: its last lines and where a follower should continue. */
export interface LogTail {
  /** Up to `n` last complete lines, oldest first, without newlines. */
  readonly lines: string[];
  /** Byte offset just after the last complete line: pass it as `fromOffset` to {@link followLog}. */
  readonly endOffset: number;
}

/** Options of {@link readLogTail} and {@link tailLines}. */
export interface TailOptions {
  /** Lines longer than this many bytes are cut to it. Default 16 KiB. */
  readonly maxLineBytes?: number;
}

/**
 * Reads the last `n` complete lines of a log by reading backwards from its end in chunks, so the
 * cost is bounded by n × maxLineBytes whatever the size of the file. An unfinished last line (no
 * newline yet) is left out; the follower delivers it once complete. When the read window is
 * exhausted first, the oldest line returned may be the tail end of a very long line. A missing file
 * has no lines.
 */
export async function readLogTail(
  logPath: string,
  n: number,
  options: TailOptions = {},
): Promise<LogTail> {
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(logPath, "r");
  } catch (error) {
    if (isMissing(error)) return { lines: [], endOffset: 0 };
    throw error;
  }
  try {
    const size = (await handle.stat()).size;
    const chunkBytes = 64 * 1024;
    // Enough for n full-length lines plus the newline before the first and a partial last line.
    const windowBytes = (n + 2) * (maxLineBytes + 1);
    const chunks: Buffer[] = [];
    let start = size;
    let newlines = 0;
    let endOffset: number | undefined;
    while (start > 0 && size - start < windowBytes) {
      const length = Math.min(chunkBytes, start);
      start -= length;
      const chunk = Buffer.alloc(length);
      const { bytesRead } = await handle.read(chunk, 0, length, start);
      const data = chunk.subarray(0, bytesRead);
      chunks.unshift(data);
      for (let index = data.length - 1; index >= 0; index--) {
        if (data[index] !== NEWLINE) continue;
        endOffset ??= start + index + 1;
        newlines++;
      }
      // n lines need n + 1 newlines: the one ending each line and the one before the first.
      if (newlines > n) break;
    }
    if (endOffset === undefined || n <= 0) return { lines: [], endOffset: endOffset ?? 0 };
    const text = Buffer.concat(chunks).subarray(0, endOffset - start);
    // Unless we read from the start of the file, the first element begins mid-line: drop it when
    // enough lines follow; keep it (the tail end of a very long line) when the window ran out.
    const { lines } = splitLines(text, maxLineBytes);
    const complete = start === 0 || newlines <= n ? lines : lines.slice(1);
    return { lines: complete.slice(-n), endOffset };
  } finally {
    await handle.close();
  }
}

/** The last `n` complete lines of a log ({@link readLogTail} without the offset). */
export async function tailLines(
  logPath: string,
  n: number,
  options: TailOptions = {},
): Promise<string[]> {
  return (await readLogTail(logPath, n, options)).lines;
}

/** Options of {@link followLog}. */
export interface FollowOptions {
  /** Ends the iteration (without an error) when aborted. */
  readonly signal: AbortSignal;
  /** Offset to continue from (typically {@link LogTail.endOffset}); default: the current end. */
  readonly fromOffset?: number;
  /** Period of the fallback poll when no watch event arrives, in milliseconds. Default 250. */
  readonly pollIntervalMs?: number;
  /** Lines longer than this many bytes are cut to it. Default 16 KiB. */
  readonly maxLineBytes?: number;
}

/**
 * Yields batches of complete lines as they are appended to a log, until `signal` aborts. Woken by
 * `fs.watch` with a short poll as a fallback (watch events can be missed or coalesced). When the
 * file shrinks below the read position (copy-truncate rotation), reading restarts at offset 0.
 * A rotation that is followed by regrowth past the old position before the next check goes
 * unnoticed; with a 10 MiB threshold and a sub-second poll that cannot happen in practice.
 * A missing file is waited for.
 */
export async function* followLog(
  logPath: string,
  options: FollowOptions,
): AsyncGenerator<string[], void, undefined> {
  const { signal } = options;
  const pollIntervalMs = options.pollIntervalMs ?? 250;
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  if (signal.aborted) return;

  let offset = options.fromOffset ?? (await sizeOf(logPath)) ?? 0;
  let partial: Buffer = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  // Set by a watch event or abort; an event that arrives while we read must not be lost.
  let pending = false;
  const notify = (): void => {
    pending = true;
    wake?.();
  };
  let watcher: ReturnType<typeof watch> | undefined;
  const startWatching = (): void => {
    try {
      watcher = watch(logPath, { persistent: false }, notify);
      // A watcher error (the file was removed) falls back to polling until it reappears.
      watcher.on("error", () => {
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      // Missing file or no inotify: the poll covers it; watching is retried next round.
    }
  };
  signal.addEventListener("abort", notify);
  try {
    while (!signal.aborted) {
      pending = false;
      if (watcher === undefined) startWatching();
      const size = await sizeOf(logPath);
      if (size !== undefined && size < offset) {
        // Truncated by rotation: the unread rest went to `.1`; continue from the start.
        offset = 0;
      }
      if (size !== undefined && size > offset) {
        const data = await readRange(logPath, offset, Math.min(size, offset + 1024 * 1024));
        offset += data.length;
        const { lines, rest } = splitLines(
          partial.length > 0 ? Buffer.concat([partial, data]) : data,
          maxLineBytes,
        );
        partial = Buffer.from(rest);
        if (partial.length > maxLineBytes) {
          // A line without end in sight: deliver what fits rather than buffer without limit.
          lines.push(decodeLine(partial, maxLineBytes));
          partial = Buffer.alloc(0);
        }
        if (lines.length > 0) yield lines;
        if (offset < size) continue; // More than one read's worth was waiting.
      }
      if (signal.aborted) break;
      await new Promise<void>((resolve) => {
        if (pending || signal.aborted) {
          resolve();
          return;
        }
        const timer = setTimeout(done, pollIntervalMs);
        wake = done;
        function done(): void {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        }
      });
    }
  } finally {
    signal.removeEventListener("abort", notify);
    watcher?.close();
  }
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}
