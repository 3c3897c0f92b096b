/**
 * A log file bounded exactly on disk (docs/platform.md, "Writing: an exact bound"): the size is
 * checked before each write, and the file is rotated by rename (`<log>` → `.1` → … →
 * `.<keep>`) before it would pass `maxBytes`. So every file holds at most `maxBytes` and all of
 * them at most (keep + 1) × maxBytes, at every instant.
 *
 * Writes are synchronous: the keeper does nothing else, a write to the page cache takes
 * microseconds, and the size in memory is then always the size on disk. A write that fails
 * (disk full, read-only file system...) drops the bytes, counts them, and the next write that
 * succeeds is preceded by a line saying how many were dropped. Nothing here throws.
 *
 * No symbolic link is ever followed (docs/platform.md, "No symlink followed"): the live file is
 * opened `O_NOFOLLOW` and must be a regular file, and before each rotation the path must still
 * name the very file written (lstat). Anything else at the path (a symlink, a FIFO, a device, a
 * directory) is refused: the output is dropped and counted, as for a full disk, until it is
 * removed, and the reason says what was found.
 */
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  type Stats,
  unlinkSync,
  writeSync,
} from "node:fs";
import path from "node:path";

const NEWLINE = 0x0a;

/** Limits of a {@link BoundedLog}. */
export interface LogLimits {
  /** Most bytes in one file (≥ 1). */
  readonly maxBytes: number;
  /** Rotated files kept (`.1` newest … `.<keep>` oldest); 0 keeps only the live file. */
  readonly keep: number;
}

/** Counters of a {@link BoundedLog} since it was opened. */
export interface BoundedLogStats {
  /** Bytes given to `write` that are in the files. */
  written: number;
  /** Bytes given to `write` that could not be written. */
  dropped: number;
  rotations: number;
}

/** The prefix of the line the log gets after bytes were dropped. */
export const DROPPED_MARKER = "[atoll-deploy] dropped";

function errorCode(error: unknown): string {
  const { code, message } = error as NodeJS.ErrnoException;
  return code ?? message ?? String(error);
}

/** "ENOSPC: no space left on device" from a Node fs error. */
function describeError(error: unknown): string {
  if (error instanceof NotARegularFile) return error.message;
  const { code, message } = error as NodeJS.ErrnoException;
  if (typeof code !== "string") return error instanceof Error ? error.message : String(error);
  // Node's messages read "ENOSPC: no space left on device, write": keep the part that says why.
  const match = /^[A-Z]+: ([^,]+)/.exec(message ?? "");
  return match?.[1] === undefined ? code : `${code}: ${match[1]}`;
}

function isMissing(error: unknown): boolean {
  return errorCode(error) === "ENOENT";
}

/** What a non-regular file is, for messages: "a symbolic link", "a FIFO"... */
export function describeFileType(stats: Stats): string {
  if (stats.isSymbolicLink()) return "a symbolic link";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isDirectory()) return "a directory";
  if (stats.isSocket()) return "a socket";
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return "a device";
  return "not a regular file";
}

/** A refusal to write through what is at the log path: carries its own message. */
class NotARegularFile extends Error {
  override readonly name = "NotARegularFile";
  constructor(what: string) {
    super(`${what}, not a regular file: refusing to write through it`);
  }
}

/**
 * lstat of `file`: undefined when missing, the stats of a regular file; throws NotARegularFile
 * for anything else (never followed).
 */
function lstatRegular(file: string): Stats | undefined {
  const stats = lstatSync(file, { throwIfNoEntry: false });
  if (stats === undefined || stats.isFile()) return stats;
  throw new NotARegularFile(describeFileType(stats));
}

/** Length of the longest prefix of `data[0, limit)` that ends with a newline (0 when none). */
function prefixToLastNewline(data: Uint8Array, limit: number): number {
  const at = data.lastIndexOf(NEWLINE, limit - 1);
  return at === -1 ? 0 : at + 1;
}

export class BoundedLog {
  readonly path: string;
  readonly stats: BoundedLogStats = { written: 0, dropped: 0, rotations: 0 };
  #maxBytes: number;
  #keep: number;
  #fd: number | undefined;
  /** Device and inode of the live file while open: the rotation renames only that very file. */
  #identity: { dev: number; ino: number } | undefined;
  /** Size of the live file, as written by us (equal to the size on disk). */
  #size = 0;
  /** True when the live file is empty or ends with a newline. */
  #atLineStart = true;
  /** Bytes dropped since the last marker line. */
  #unreported = 0;
  #dropReason = "";
  /** Told of each failure (for the keeper's diagnostics); never of two equal ones in a row. */
  readonly #onError: ((problem: string) => void) | undefined;
  #lastProblem = "";

  /**
   * Opens (creating it and its directory if needed, mode 0640) `logPath` for appending and
   * deletes rotated files beyond `keep`. A failure to open is not thrown: the bytes of the
   * writes that follow are dropped and counted until opening works.
   */
  constructor(logPath: string, limits: LogLimits, onError?: (problem: string) => void) {
    this.path = logPath;
    this.#maxBytes = limits.maxBytes;
    this.#keep = limits.keep;
    this.#onError = onError;
    try {
      mkdirSync(path.dirname(logPath), { recursive: true });
    } catch (error) {
      this.#fail(error);
    }
    this.#ensureOpen();
    this.#prune();
  }

  get limits(): LogLimits {
    return { maxBytes: this.#maxBytes, keep: this.#keep };
  }

  /**
   * Why the live file cannot be written now, when something other than a regular file is at
   * its path ("a symbolic link, not a regular file: refusing to write through it"); undefined
   * otherwise (open, or failing for another reason such as a full disk).
   */
  get refusal(): string | undefined {
    if (this.#fd !== undefined) return undefined;
    try {
      lstatRegular(this.path);
      return undefined;
    } catch (error) {
      return error instanceof NotARegularFile ? error.message : undefined;
    }
  }

  /** New limits: a smaller `maxBytes` rotates before the next write, a smaller `keep` deletes files now. */
  setLimits(limits: LogLimits): void {
    this.#maxBytes = limits.maxBytes;
    this.#keep = limits.keep;
    this.#prune();
  }

  /**
   * Appends `data`, rotating as needed so that no file passes `maxBytes`: a chunk that does not
   * fit is split after its last newline that fits; with none, a non-empty file is rotated
   * first; a single line longer than `maxBytes` is cut. Never throws.
   */
  write(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.#unreported > 0 && !this.#writeMarker()) {
      this.#drop(data.length);
      return;
    }
    let rest = data;
    while (rest.length > 0) {
      if (!this.#ensureOpen()) {
        this.#drop(rest.length);
        return;
      }
      const room = this.#maxBytes - this.#size;
      if (rest.length <= room) {
        this.#append(rest);
        return;
      }
      let cut = room > 0 ? prefixToLastNewline(rest, room) : 0;
      if (cut === 0) {
        if (this.#size > 0) {
          if (!this.#rotate()) {
            this.#drop(rest.length);
            return;
          }
          continue;
        }
        cut = room; // one line longer than a whole file: cut it
      }
      const written = this.#append(rest.subarray(0, cut));
      rest = rest.subarray(cut);
      if (!written || !this.#rotate()) {
        this.#drop(rest.length);
        return;
      }
    }
  }

  /** Closes the live file (idempotent). */
  close(): void {
    if (this.#fd === undefined) return;
    try {
      closeSync(this.#fd);
    } catch (error) {
      this.#fail(error);
    }
    this.#fd = undefined;
    this.#identity = undefined;
  }

  #rotated(index: number): string {
    return `${this.path}.${index}`;
  }

  #fail(error: unknown): void {
    const problem = describeError(error);
    this.#dropReason = problem;
    if (problem !== this.#lastProblem) {
      this.#lastProblem = problem;
      this.#onError?.(`${this.path}: ${problem}`);
    }
  }

  #drop(bytes: number): void {
    if (bytes <= 0) return;
    this.#unreported += bytes;
    this.stats.dropped += bytes;
  }

  #ensureOpen(): boolean {
    if (this.#fd !== undefined) return true;
    let fd: number | undefined;
    try {
      // Checked before opening, so that nothing else (a FIFO, a device) is ever opened; then
      // O_NOFOLLOW and fstat close the race with a swap between the two.
      lstatRegular(this.path);
      fd = openSync(
        this.path,
        constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW,
        0o640,
      );
      const opened = fstatSync(fd);
      if (!opened.isFile()) throw new NotARegularFile(describeFileType(opened));
      const size = opened.size;
      let atLineStart = true;
      if (size > 0) {
        const last = Buffer.alloc(1);
        readSync(fd, last, 0, 1, size - 1);
        atLineStart = last[0] === NEWLINE;
      }
      this.#fd = fd;
      this.#identity = { dev: opened.dev, ino: opened.ino };
      this.#size = size;
      this.#atLineStart = atLineStart;
      this.#lastProblem = "";
      return true;
    } catch (error) {
      // ELOOP: a symbolic link appeared between the lstat and the open.
      const refused = errorCode(error) === "ELOOP" ? new NotARegularFile("a symbolic link") : error;
      if (fd !== undefined) closeSync(fd);
      this.#fail(refused);
      return false;
    }
  }

  /**
   * Writes `piece` to the live file; on a failure the unwritten part is dropped (counted) and
   * false returned. `output` false: a marker, not the agent's bytes (not counted in `written`).
   */
  #append(piece: Uint8Array, output = true): boolean {
    const fd = this.#fd;
    if (fd === undefined) {
      if (output) this.#drop(piece.length);
      return false;
    }
    let offset = 0;
    try {
      while (offset < piece.length) {
        const n = writeSync(fd, piece, offset, piece.length - offset);
        offset += n;
        this.#size += n;
        if (output) this.stats.written += n;
      }
      this.#atLineStart = piece[piece.length - 1] === NEWLINE;
      return true;
    } catch (error) {
      this.#fail(error);
      if (offset > 0) this.#atLineStart = piece[offset - 1] === NEWLINE;
      if (output) this.#drop(piece.length - offset);
      return false;
    }
  }

  /** Writes the "dropped N bytes" line, rotating first if it does not fit. False when it could not. */
  #writeMarker(): boolean {
    if (!this.#ensureOpen()) return false;
    const text = `${this.#atLineStart ? "" : "\n"}${DROPPED_MARKER} ${this.#unreported} bytes of output: ${this.#dropReason || "write failed"}\n`;
    let line = Buffer.from(text);
    if (this.#size + line.length > this.#maxBytes && this.#size > 0) {
      if (!this.#rotate()) return false;
      line = Buffer.from(text.replace(/^\n/, ""));
    }
    if (line.length > this.#maxBytes) line = line.subarray(0, this.#maxBytes);
    if (!this.#append(line, false)) return false;
    this.#unreported = 0;
    return true;
  }

  /**
   * `<log>` → `.1`, `.1` → `.2` … (the rename onto `.<keep>` drops the oldest), then a new live
   * file. With keep 0 the live file is removed. False when a rename or the new file failed.
   */
  #rotate(): boolean {
    const identity = this.#identity;
    this.close();
    this.stats.rotations += 1;
    try {
      // The path must still name the file written: something put in its place (a symbolic
      // link to another file) is neither renamed into the chain nor removed; it is refused.
      const live = lstatRegular(this.path);
      if (live !== undefined && (live.dev !== identity?.dev || live.ino !== identity.ino)) {
        throw new Error("replaced by another file while it was written: not rotated");
      }
      if (this.#keep === 0) {
        ignoreMissing(() => unlinkSync(this.path));
      } else {
        let top = 0;
        while (top < this.#keep - 1 && exists(this.#rotated(top + 1))) top += 1;
        for (let index = top; index >= 1; index--) {
          const from = this.#rotated(index);
          const to = this.#rotated(index + 1);
          ignoreMissing(() => renameSync(from, to));
        }
        ignoreMissing(() => renameSync(this.path, this.#rotated(1)));
      }
    } catch (error) {
      this.#fail(error);
      return false;
    }
    return this.#ensureOpen();
  }

  /** Deletes `.<keep+1>`, `.<keep+2>` … up to the first that does not exist. */
  #prune(): void {
    for (let index = this.#keep + 1; ; index++) {
      try {
        unlinkSync(this.#rotated(index));
      } catch (error) {
        if (!isMissing(error)) this.#fail(error);
        return;
      }
    }
  }
}

/** Runs `action`; a missing file (someone removed it) is not a failure. */
function ignoreMissing(action: () => void): void {
  try {
    action();
  } catch (error) {
    if (!isMissing(error)) throw error;
  }
}

/** True when something is at `file` (never followed: a dangling symlink exists too). */
function exists(file: string): boolean {
  return lstatSync(file, { throwIfNoEntry: false }) !== undefined;
}
