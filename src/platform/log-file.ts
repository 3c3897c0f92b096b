/**
 * Reading agent logs back (SPEC §4, docs/platform.md "Logs: reading them back"). The output
 * keeper writes `<logs>/<name>.log` and rotates it by rename (`.log` → `.1` → … → `.<keep>`),
 * so a reader may hold a file that is renamed away under it. Readers therefore follow files by
 * identity (device and inode), never by path alone: a tail reads backwards across the chain of
 * files, and a follower finishes the file it holds before it opens that file's successor. No gap
 * and no duplicate line, whatever the number of rotations in between.
 */
import { close, constants, fstatSync, mkdirSync, openSync, read, statSync, watch } from "node:fs";
import { type FileHandle, open, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

/** 16 KiB: default cap of one line returned by tail or follow; longer lines are cut. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;
/** 8 MiB: the most a tail reads backwards, whatever the number of lines asked for. */
export const DEFAULT_TAIL_SCAN_BYTES = 8 * 1024 * 1024;
/**
 * The line a follower yields where it lost track of the rotations (it fell more than
 * `log_keep` rotations behind without seeing them) and goes on with the oldest file left.
 */
export const SKIPPED_MARKER =
  "[atoll-deploy] StreamLogs fell behind the log's rotation: output may be missing here";

const NEWLINE = 0x0a;
const CHUNK_BYTES = 64 * 1024;
/** `.1` … `.1000`: the most rotated files `log_keep` allows. */
const MAX_ROTATED = 1000;

/** Path of the log of agent `name` in `dir`: `<dir>/<name>.log`. Agent names are file-name safe. */
export function agentLogPath(dir: string, name: string): string {
  return path.join(dir, `${name}.log`);
}

/**
 * Opens (creating it and its directory if needed, mode 0640) `logPath` for appending and returns
 * the descriptor: the output of an agent spawned without an output keeper. The caller closes it.
 * @throws the fs error (EACCES, ENOSPC, EISDIR...).
 */
export function openLogForAppend(logPath: string): number {
  mkdirSync(path.dirname(logPath), { recursive: true });
  return openSync(logPath, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o640);
}

/** Where a reader is: a file by identity, and an offset in it. */
export interface LogPosition {
  readonly dev: number;
  readonly ino: number;
  readonly offset: number;
}

interface FileId {
  readonly dev: number;
  readonly ino: number;
}

function sameFile(a: FileId, b: FileId): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

/** `<log>` for index 0, `<log>.<index>` for a rotated file. */
function chainPath(logPath: string, index: number): string {
  return index === 0 ? logPath : `${logPath}.${index}`;
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ENOENT";
}

async function statOrUndefined(file: string): Promise<(FileId & { size: number }) | undefined> {
  try {
    const s = await stat(file);
    return { dev: s.dev, ino: s.ino, size: s.size };
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

/**
 * Where the file `id` now is in the chain (0 = the live log), or undefined when it is not in it
 * (deleted). The live log may be missing for a moment during a rotation; the scan stops at the
 * first missing rotated file.
 */
async function indexInChain(logPath: string, id: FileId): Promise<number | undefined> {
  for (let index = 0; index <= MAX_ROTATED; index++) {
    const found = await statOrUndefined(chainPath(logPath, index));
    if (found === undefined) {
      if (index === 0) continue;
      return undefined;
    }
    if (sameFile(found, id)) return index;
  }
  return undefined;
}

/** An open file with its identity; undefined when missing. */
async function openFile(file: string): Promise<{ handle: FileHandle; id: FileId } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  const s = await handle.stat();
  return { handle, id: { dev: s.dev, ino: s.ino } };
}

/** UTF-8 decoding of one line without its newline (and CR), cut to `maxLineBytes`. */
function decodeLine(bytes: Uint8Array, maxLineBytes: number): string {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  // Cutting may split a multi-byte character; the decoder turns its bytes into U+FFFD.
  return Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(end, maxLineBytes)).toString("utf8");
}

/** The end of a log: its last lines and where a follower should continue. */
export interface LogTail {
  /** Up to `n` last complete lines, oldest first, without newlines. */
  readonly lines: string[];
  /**
   * Just after the last complete line (or where the scan began when it found none): pass it as
   * `from` to {@link followLog}. Undefined when there is no log file yet.
   */
  readonly position: LogPosition | undefined;
}

/** Options of {@link readLogTail} and {@link tailLines}. */
export interface TailOptions {
  /** Lines longer than this many bytes are cut to it. Default 16 KiB. */
  readonly maxLineBytes?: number;
  /** Most bytes read backwards in all (across rotated files). Default 8 MiB. */
  readonly maxScanBytes?: number;
}

/** A piece of one file inside the tail's buffer. */
interface Segment {
  readonly id: FileId;
  /** Offset in the file of the segment's first byte. */
  readonly fileOffset: number;
  readonly length: number;
}

/**
 * Reads the last `n` complete lines of a log by reading backwards from the end of `<name>.log`
 * in 64 KiB chunks and, when that file has fewer lines, on into `.1`, `.2` …, at most
 * `maxScanBytes` in all. An unfinished last line is left out (a follower delivers it once
 * complete). When the scan window ends first, the oldest line returned may be the tail end of a
 * very long line. A missing log has no lines.
 */
export async function readLogTail(
  logPath: string,
  n: number,
  options: TailOptions = {},
): Promise<LogTail> {
  const maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  const maxScanBytes = options.maxScanBytes ?? DEFAULT_TAIL_SCAN_BYTES;
  // The live log, or during a rotation (live log renamed, new one not yet created) `.1`.
  const first = (await openFile(logPath)) ?? (await openFile(chainPath(logPath, 1)));
  if (first === undefined) return { lines: [], position: undefined };
  const chunks: Buffer[] = [];
  const segments: Segment[] = [];
  let scanned = 0;
  let newlines = 0;
  let reachedStart = false;
  let file: { handle: FileHandle; id: FileId } | undefined = first;
  try {
    while (file !== undefined) {
      const size = (await file.handle.stat()).size;
      let start = size;
      const fileChunks: Buffer[] = [];
      while (start > 0 && scanned < maxScanBytes && newlines <= n) {
        const length = Math.min(CHUNK_BYTES, start, maxScanBytes - scanned);
        start -= length;
        const chunk = Buffer.alloc(length);
        const { bytesRead } = await file.handle.read(chunk, 0, length, start);
        const data = chunk.subarray(0, bytesRead);
        fileChunks.unshift(data);
        scanned += data.length;
        for (let i = data.length - 1; i >= 0; i--) if (data[i] === NEWLINE) newlines++;
      }
      const fileData = Buffer.concat(fileChunks);
      chunks.unshift(fileData);
      segments.unshift({ id: file.id, fileOffset: start, length: fileData.length });
      // n lines need n + 1 newlines: the one ending each line and the one before the first.
      if (start > 0 || newlines > n || scanned >= maxScanBytes) break;
      const index = await indexInChain(logPath, file.id);
      const older: { handle: FileHandle; id: FileId } | undefined =
        index === undefined ? undefined : await openFile(chainPath(logPath, index + 1));
      await file.handle.close();
      file = older;
      if (file === undefined) reachedStart = true;
    }
  } finally {
    await file?.handle.close();
  }
  const text = Buffer.concat(chunks);
  const lastNewline = text.lastIndexOf(NEWLINE);
  const position = positionAt(segments, lastNewline + 1);
  if (lastNewline === -1 || n <= 0) return { lines: [], position };
  const lines: string[] = [];
  let from = 0;
  for (
    let at = text.indexOf(NEWLINE);
    at !== -1 && at <= lastNewline;
    at = text.indexOf(NEWLINE, from)
  ) {
    lines.push(decodeLine(text.subarray(from, at), maxLineBytes));
    from = at + 1;
  }
  // Unless the scan began at the very start of the oldest file, the first element begins
  // mid-line: drop it when enough lines follow; keep it (the end of a very long line) otherwise.
  const complete = reachedStart || lines.length <= n ? lines : lines.slice(1);
  return { lines: complete.slice(-n), position };
}

/** The file and offset of byte `index` of the tail's buffer (its end when past it). */
function positionAt(segments: readonly Segment[], index: number): LogPosition | undefined {
  let rest = index;
  for (const [i, segment] of segments.entries()) {
    // A position at a segment's end belongs to the next file's start, except for the last.
    if (rest < segment.length || (rest === segment.length && i === segments.length - 1)) {
      return { ...segment.id, offset: segment.fileOffset + rest };
    }
    rest -= segment.length;
  }
  const last = segments.at(-1);
  return last && { ...last.id, offset: last.fileOffset + last.length };
}

/** The last `n` complete lines of a log ({@link readLogTail} without the position). */
export async function tailLines(
  logPath: string,
  n: number,
  options: TailOptions = {},
): Promise<string[]> {
  return (await readLogTail(logPath, n, options)).lines;
}

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
   * Where to begin: a position (typically {@link LogTail.position}), `"start"` (the live log's
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

/** Opens `file` read-only now; undefined when it does not exist. */
function openNow(file: string): OpenFile | undefined {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
  const s = fstatSync(fd);
  return { fd, id: { dev: s.dev, ino: s.ino } };
}

function statNow(file: string): FileId | undefined {
  const s = statSync(file, { throwIfNoEntry: false });
  return s && { dev: s.dev, ino: s.ino };
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
    const live = statSync(logPath, { throwIfNoEntry: false });
    from = live === undefined ? "start" : { dev: live.dev, ino: live.ino, offset: live.size };
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
