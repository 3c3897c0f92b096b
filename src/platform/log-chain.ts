/**
 * The chain of files of one agent log and how readers tell them apart (docs/platform.md, "Logs:
 * reading them back"): the output keeper writes `<logs>/<name>.log` and rotates it by rename
 * (`.log` → `.1` → … → `.<keep>`), so a reader may hold a file that is renamed away under it.
 * Files are known by identity (device and inode), never by path alone, and only regular files
 * are read: a symbolic link, FIFO or device in the logs directory is treated as absent.
 */

/** 16 KiB: default cap of one line returned by tail or follow; longer lines are cut. */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;
/** `.1` … `.1000`: the most rotated files `log_keep` allows. */
export const MAX_ROTATED = 1000;
export const NEWLINE = 0x0a;

/** Where a reader is: a file by identity, and an offset in it. */
export interface LogPosition {
  readonly dev: number;
  readonly ino: number;
  readonly offset: number;
}

export interface FileId {
  readonly dev: number;
  readonly ino: number;
}

export function sameFile(a: FileId, b: FileId): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

export /** `<log>` for index 0, `<log>.<index>` for a rotated file. */
function chainPath(logPath: string, index: number): string {
  return index === 0 ? logPath : `${logPath}.${index}`;
}

export function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ENOENT";
}

/**
 * True for the error of an `O_NOFOLLOW` open of a symbolic link (ELOOP). Readers never follow
 * one: a link in the logs directory could otherwise show another file's content to a client.
 */
export function isSymlinkRefusal(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === "ELOOP";
}

export /** UTF-8 decoding of one line without its newline (and CR), cut to `maxLineBytes`. */
function decodeLine(bytes: Uint8Array, maxLineBytes: number): string {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  // Cutting may split a multi-byte character; the decoder turns its bytes into U+FFFD.
  return Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(end, maxLineBytes)).toString("utf8");
}
