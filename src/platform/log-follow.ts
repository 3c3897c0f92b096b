/**
 * Following an agent log across rotations (SPEC §4: "StreamLogs follow keeps going across
 * rotations"; docs/platform.md, "Logs: reading them back"). A follower reads the file it holds
 * to its end, and goes on with the file that came after it, known by identity, never by path.
 */
import { close, constants, fstatSync, lstatSync, openSync, read, watch } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import {
  chainPath,
  DEFAULT_MAX_LINE_BYTES,
  decodeLine,
  type FileId,
  isMissing,
  isSymlinkRefusal,
  type LogPosition,
  MAX_ROTATED,
  NEWLINE,
  sameFile,
} from "./log-chain.ts";

/**
 * The line a follower yields where it lost track of the rotations (it fell more than
 * `log_keep` rotations behind without seeing them) and goes on with the oldest file left.
 */
export const SKIPPED_MARKER =
  "[atoll-deploy] StreamLogs fell behind the log's rotation: output may be missing here";

/**
 * Splits a byte stream into lines: a line longer than `maxLineBytes` is delivered cut (as soon
 * as that much of it arrived) and the rest of it skipped up to its newline, so a line without
 * end never holds more than `maxLineBytes` in memory.
 */
class LineSplitter {
  readonly #maxLineBytes: number;
  #partial: Buffer = Buffer.alloc(0);
  #skipping = false;

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  push(data: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let at = data.indexOf(NEWLINE); at !== -1; at = data.indexOf(NEWLINE, start)) {
      const piece = data.subarray(start, at);
      start = at + 1;
      if (this.#skipping) {
        this.#skipping = false;
        continue;
      }
      const line = this.#partial.length > 0 ? Buffer.concat([this.#partial, piece]) : piece;
      this.#partial = Buffer.alloc(0);
      lines.push(decodeLine(line, this.#maxLineBytes));
    }
    if (!this.#skipping && start < data.length) {
      const rest = data.subarray(start);
      this.#partial = Buffer.concat([this.#partial, rest]);
      if (this.#partial.length > this.#maxLineBytes) {
        lines.push(decodeLine(this.#partial, this.#maxLineBytes));
        this.#partial = Buffer.alloc(0);
        this.#skipping = true;
      }
    }
    return lines;
  }
}

/** Options of {@link followLog}. */
export interface FollowOptions {
  /** Ends the iteration (without an error) when aborted. */
  readonly signal: AbortSignal;
  /**
   * Where to begin: a position (typically `LogTail.position` from `readLogTail`), `"start"` (the live log's
   * first byte) or `"end"` (its end at the time of the call; the default). A missing log is
   * waited for.
   */
  readonly from?: LogPosition | "start" | "end";
  /** Period of the fallback poll when no watch event arrives, in milliseconds. Default 250. */
  readonly pollIntervalMs?: number;
  /** Lines longer than this many bytes are cut to it. Default 16 KiB. */
  readonly maxLineBytes?: number;
  /** Most bytes read at once (and so held per follower). Default 1 MiB. */
  readonly maxReadBytes?: number;
}

/** An open file by descriptor, with its identity. */
interface OpenFile {
  readonly fd: number;
  readonly id: FileId;
}

/** The file a follower reads, and the one after it once known. */
interface Reading extends OpenFile {
  offset: number;
  /**
   * The file that came after this one, opened as soon as this one was seen rotated away. Held
   * open, it can neither be lost to a deletion nor have its inode number reused: the follower
   * reads it next, however far behind it falls.
   */
  next?: OpenFile;
}

const readAsync = promisify(read);
const closeAsync = promisify(close);

function closeQuietly(fd: number): void {
  close(fd, () => undefined);
}

/**
 * Opens `file` read-only now; undefined when it does not exist or is not a regular file (a
 * symbolic link is never followed, a FIFO never blocks the open).
 */
function openNow(file: string): OpenFile | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if (isMissing(error) || isSymlinkRefusal(error)) return undefined;
    throw error;
  }
  const s = fstatSync(fd);
  if (!s.isFile()) {
    closeQuietly(fd);
    return undefined;
  }
  return { fd, id: { dev: s.dev, ino: s.ino } };
}

/** Identity of the regular file at `file` (lstat: never followed); undefined otherwise. */
function statNow(file: string): FileId | undefined {
  const s = lstatSync(file, { throwIfNoEntry: false });
  return s?.isFile() ? { dev: s.dev, ino: s.ino } : undefined;
}

/** Where `id` is in the chain now (0 = live log), or undefined when it is not in it. */
function indexNow(logPath: string, id: FileId): number | undefined {
  for (let index = 0; index <= MAX_ROTATED; index++) {
    const found = statNow(chainPath(logPath, index));
    if (found === undefined && index > 0) return undefined;
    if (found !== undefined && sameFile(found, id)) return index;
  }
  return undefined;
}

/**
 * Once `reading`'s file is no longer the live log, opens the file one index newer than where it
 * went (checked against a rotation in between) and keeps it as `reading.next`. Synchronous
 * stats and open (microseconds), so that the watch callback can note it as a rotation happens.
 */
function noteSuccessor(logPath: string, reading: Reading): void {
  if (reading.next !== undefined) return;
  try {
    const live = statNow(logPath);
    if (live === undefined || sameFile(live, reading.id)) return;
    const index = indexNow(logPath, reading.id);
    if (index === undefined || index === 0) return;
    const next = openNow(chainPath(logPath, index - 1));
    if (next === undefined) return;
    // A rotation between the lookup and the open shifted both: try again at the next chance.
    if (indexNow(logPath, reading.id) === index) reading.next = next;
    else closeQuietly(next.fd);
  } catch {
    // A stat or open failing for another reason than a missing file: tried again later.
  }
}

/**
 * Yields batches of complete lines as they are written to a log, across rotations, until
 * `signal` aborts. Follows the file it reads by identity: once `<name>.log` names another
 * file, the one it holds is complete (the keeper writes a file before renaming it), so it reads
 * it to its end and goes on with its successor, noted (and held open) as soon as the rotation
 * was seen: from the watch callback, which runs even while the consumer has not asked for the
 * next batch, and at every read. A line split across two files is joined. Only a follower
 * that saw none of the rotations that took its file and its successor away (more than
 * `log_keep` + 1 in a row before its event loop ran) cannot know what it missed; it goes on with
 * the oldest file left. Woken by `fs.watch` on the log's directory, with a poll as a fallback.
 */
export async function* followLog(
  logPath: string,
  options: FollowOptions,
): AsyncGenerator<string[], void, undefined> {
  const { signal } = options;
  const pollIntervalMs = options.pollIntervalMs ?? 250;
  const buffer = Buffer.alloc(Math.max(1, options.maxReadBytes ?? 1024 * 1024));
  const splitter = new LineSplitter(options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
  if (signal.aborted) return;

  let current: Reading | undefined;
  let from = options.from ?? "end";
  if (from === "end") {
    // Now, synchronously: what is written after this call is new, whatever the scheduling.
    const live = lstatSync(logPath, { throwIfNoEntry: false });
    from = live?.isFile() ? { dev: live.dev, ino: live.ino, offset: live.size } : "start";
  }
  if (typeof from === "object") {
    const index = indexNow(logPath, from);
    const opened = index === undefined ? undefined : openNow(chainPath(logPath, index));
    if (opened !== undefined && sameFile(opened.id, from)) {
      current = { ...opened, offset: from.offset };
    } else if (opened !== undefined) {
      closeQuietly(opened.fd); // the file of the position is gone: the live log is all new
    }
  }

  let wake: (() => void) | undefined;
  // Set by a watch event or abort; an event that arrives while we read must not be lost.
  let pending = false;
  const notify = (): void => {
    pending = true;
    wake?.();
  };
  const base = path.basename(logPath);
  let watcher: ReturnType<typeof watch> | undefined;
  const startWatching = (): void => {
    try {
      watcher = watch(path.dirname(logPath), { persistent: false }, (_event, name) => {
        if (name !== null && !name.startsWith(base)) return;
        if (current !== undefined) noteSuccessor(logPath, current);
        notify();
      });
      watcher.on("error", () => {
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      // No directory yet, or no inotify: the poll covers it; watching is retried next round.
    }
  };
  signal.addEventListener("abort", notify);
  try {
    while (!signal.aborted) {
      pending = false;
      if (watcher === undefined) startWatching();
      if (current === undefined) {
        const opened = openNow(logPath);
        if (opened !== undefined) current = { ...opened, offset: 0 };
      }
      if (current !== undefined) {
        noteSuccessor(logPath, current);
        const { bytesRead: bytes } = await readAsync(
          current.fd,
          buffer,
          0,
          buffer.length,
          current.offset,
        );
        if (bytes > 0) {
          current.offset += bytes;
          const lines = splitter.push(buffer.subarray(0, bytes));
          if (lines.length > 0) yield lines;
          continue;
        }
        const live = statNow(logPath);
        if (live !== undefined && sameFile(live, current.id)) {
          // Truncated by hand below the read position: continue from its new start.
          if (fstatSync(current.fd).size < current.offset) current.offset = 0;
        } else {
          // Read to its end after it was rotated away: go on with its successor.
          const next = current.next ?? lostSuccessor(logPath, current);
          if (next !== undefined) {
            await closeAsync(current.fd);
            current = { ...next, offset: 0 };
            if ("lost" in next && next.lost) yield [SKIPPED_MARKER];
            continue;
          }
        }
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
    if (current?.next !== undefined) closeQuietly(current.next.fd);
    if (current !== undefined) closeQuietly(current.fd);
  }
}

/**
 * The successor of a file that left the chain before its successor was noted: the oldest file
 * left, the best guess there is. `lost` when rotated files exist (`log_keep` ≥ 1): the file was
 * then rotated more than `log_keep` times unseen, and what came in between may be gone. With
 * `log_keep = 0` every rotation deletes the file, and the live log is its successor.
 * Undefined while the chain is empty (a rotation is under way).
 */
function lostSuccessor(
  logPath: string,
  reading: Reading,
): (OpenFile & { lost: boolean }) | undefined {
  const index = indexNow(logPath, reading.id);
  if (index !== undefined) return undefined; // still in the chain: noted at the next check
  let oldest = 0;
  while (oldest < MAX_ROTATED && statNow(chainPath(logPath, oldest + 1)) !== undefined) oldest++;
  const file = openNow(chainPath(logPath, oldest));
  return file && { ...file, lost: oldest > 0 };
}
