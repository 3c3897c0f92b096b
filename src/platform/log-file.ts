/**
 * Agent log files (SPEC §4): their paths, and the tail read back from them. The output keeper
 * writes and rotates them (`keeper/bounded-log.ts`); `log-follow.ts` follows them. A tail reads
 * backwards across the chain of files (`log-chain.ts`) and hands a follower the exact file and
 * offset to go on from, so nothing is lost or repeated between the two.
 */
import { closeSync, constants, fstatSync, mkdirSync, openSync } from "node:fs";
import { type FileHandle, lstat, open } from "node:fs/promises";
import path from "node:path";
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

export { DEFAULT_MAX_LINE_BYTES, type LogPosition } from "./log-chain.ts";

/** 8 MiB: the most a tail reads backwards, whatever the number of lines asked for. */
export const DEFAULT_TAIL_SCAN_BYTES = 8 * 1024 * 1024;

const CHUNK_BYTES = 64 * 1024;

/** Path of the log of agent `name` in `dir`: `<dir>/<name>.log`. Agent names are file-name safe. */
export function agentLogPath(dir: string, name: string): string {
  return path.join(dir, `${name}.log`);
}

/**
 * Opens (creating it and its directory if needed, mode 0640) `logPath` for appending and returns
 * the descriptor: the output of an agent spawned without an output keeper. The caller closes it.
 * Never through a symbolic link, and only a regular file.
 * @throws the fs error (EACCES, ENOSPC, EISDIR, ELOOP for a symbolic link...), or Error when the
 *   path is not a regular file.
 */
export function openLogForAppend(logPath: string): number {
  mkdirSync(path.dirname(logPath), { recursive: true });
  const fd = openSync(
    logPath,
    constants.O_WRONLY |
      constants.O_APPEND |
      constants.O_CREAT |
      constants.O_NOFOLLOW |
      constants.O_NONBLOCK,
    0o640,
  );
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new Error(`${logPath} is not a regular file`);
  }
  return fd;
}

/**
 * Identity and size of `file` as it is (lstat: a symbolic link is never followed); undefined
 * when it is missing or is not a regular file, which no log reader reads.
 */
async function statOrUndefined(file: string): Promise<(FileId & { size: number }) | undefined> {
  try {
    const s = await lstat(file);
    return s.isFile() ? { dev: s.dev, ino: s.ino, size: s.size } : undefined;
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

/**
 * An open file with its identity; undefined when missing or not a regular file. Never follows
 * a symbolic link (`O_NOFOLLOW`: ELOOP), and `O_NONBLOCK` keeps a FIFO put at the path from
 * blocking the open: log readers read the keeper's regular files and nothing else.
 */
async function openFile(file: string): Promise<{ handle: FileHandle; id: FileId } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    if (isMissing(error) || isSymlinkRefusal(error)) return undefined;
    throw error;
  }
  const s = await handle.stat();
  if (!s.isFile()) {
    await handle.close();
    return undefined;
  }
  return { handle, id: { dev: s.dev, ino: s.ino } };
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
