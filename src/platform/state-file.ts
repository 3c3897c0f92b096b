/**
 * The daemon's state file (SPEC §5): JSON written atomically (temp file in the same directory,
 * fsync, rename, fsync of the directory), with the previous good copy kept as `<file>.bak` and a
 * corrupt file set aside rather than overwritten.
 */

import { randomBytes } from "node:crypto";
import * as nodeFs from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * The file-system calls the state file makes; `node:fs/promises` by default. A seam for tests that
 * need ENOSPC or EROFS at a precise step, which a root test process cannot produce with chmod.
 */
export type StateFs = Pick<
  typeof nodeFs,
  "open" | "rename" | "link" | "unlink" | "copyFile" | "readFile"
>;

/** Options shared by the state-file functions. */
export interface StateFileOptions {
  /** File-system implementation. Default `node:fs/promises`. */
  readonly fs?: StateFs;
  /** Clock for the `.corrupt-<timestamp>` suffix, in ms since the epoch. Default `Date.now`. */
  readonly now?: () => number;
}

/** Result of {@link readStateFile}. */
export type StateReadResult =
  | {
      readonly ok: true;
      readonly data: unknown;
      /** "backup" when the main file was missing or corrupt and `<file>.bak` was used. */
      readonly source: "primary" | "backup";
      /** Where a corrupt main file was set aside, when it was. */
      readonly corruptCopy?: string;
    }
  | {
      readonly ok: false;
      readonly reason: "missing" | "corrupt";
      readonly message: string;
      readonly corruptCopy?: string;
    };

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Writes `data` as JSON to `path` atomically: a temp file in the same directory is written and
 * fsynced, the current file is hard-linked (copied where links are unsupported) to `<path>.bak`,
 * the temp file is renamed over `path`, and the directory is fsynced so the rename survives a power
 * loss. A reader sees the old or the new content, never a mix.
 *
 * Concurrent calls on one path are not ordered; use {@link StateFile} for that.
 * @throws the fs error (ENOSPC, EROFS, ENOTDIR...) with the previous file untouched and the temp
 *   file removed; a failure of the final directory fsync is thrown after the rename took place.
 */
export async function writeStateFile(
  path: string,
  data: unknown,
  options: StateFileOptions = {},
): Promise<void> {
  const fs = options.fs ?? nodeFs;
  const serialised: string | undefined = JSON.stringify(data, null, 2);
  if (serialised === undefined) throw new TypeError("state data must be JSON-serialisable");
  const json = `${serialised}\n`;
  const dir = dirname(path);
  // Unique per call, so even unordered concurrent writers never share a temp file.
  const suffix = `${process.pid}-${randomBytes(6).toString("hex")}`;
  const temp = join(dir, `.${basename(path)}.tmp-${suffix}`);

  try {
    const handle = await fs.open(temp, "wx", 0o600);
    try {
      await handle.writeFile(json, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await backUp(fs, path, suffix);
    await fs.rename(temp, path);
  } catch (error) {
    await fs.unlink(temp).catch(() => {
      // Never created, or already renamed: nothing to clean up.
    });
    throw error;
  }
  await syncDirectory(fs, dir);
}

/** Makes the current `path` the new `<path>.bak`, atomically; no-op when `path` does not exist. */
async function backUp(fs: StateFs, path: string, suffix: string): Promise<void> {
  const backup = `${path}.bak`;
  const temp = join(dirname(path), `.${basename(backup)}.tmp-${suffix}`);
  try {
    await fs.link(path, temp);
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT") return; // First write: nothing to keep.
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV") {
      throw error;
    }
    // No hard links on this file system: copy instead.
    await fs.copyFile(path, temp);
  }
  try {
    await fs.rename(temp, backup);
  } catch (error) {
    await fs.unlink(temp).catch(() => {
      // Best effort; the caller reports the rename failure.
    });
    throw error;
  }
}

async function syncDirectory(fs: StateFs, dir: string): Promise<void> {
  const handle = await fs.open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

type ParseOutcome =
  | { readonly kind: "ok"; readonly data: unknown }
  | { readonly kind: "missing" }
  | { readonly kind: "corrupt"; readonly message: string };

async function parseFile(fs: StateFs, path: string): Promise<ParseOutcome> {
  let text: string;
  try {
    text = await fs.readFile(path, "utf8");
  } catch (error) {
    if (errorCode(error) === "ENOENT") return { kind: "missing" };
    throw error;
  }
  try {
    return { kind: "ok", data: JSON.parse(text) as unknown };
  } catch (error) {
    const detail = text.trim() === "" ? "the file is empty" : (error as Error).message;
    return { kind: "corrupt", message: `${path} is not valid JSON: ${detail}` };
  }
}

/**
 * Reads the state file. A corrupt main file (not JSON, or empty) is renamed to
 * `<path>.corrupt-<timestamp>` so that it is kept for inspection and never backed up over the good
 * `.bak`; then, as for a missing main file, `<path>.bak` is used when it parses.
 * @returns `ok: false` with reason "missing" when neither file exists, "corrupt" when no good copy
 *   is left. Other read errors (EACCES, EIO) are thrown.
 */
export async function readStateFile(
  path: string,
  options: StateFileOptions = {},
): Promise<StateReadResult> {
  const fs = options.fs ?? nodeFs;
  const primary = await parseFile(fs, path);
  if (primary.kind === "ok") return { ok: true, data: primary.data, source: "primary" };

  let corruptCopy: string | undefined;
  if (primary.kind === "corrupt") {
    const stamp = new Date((options.now ?? Date.now)()).toISOString().replace(/[:.]/g, "-");
    corruptCopy = `${path}.corrupt-${stamp}`;
    await fs.rename(path, corruptCopy);
  }
  const backup = await parseFile(fs, `${path}.bak`);
  const copy = corruptCopy === undefined ? {} : { corruptCopy };
  if (backup.kind === "ok") return { ok: true, data: backup.data, source: "backup", ...copy };
  if (primary.kind === "corrupt") {
    const also = backup.kind === "corrupt" ? `; ${backup.message}` : "";
    return {
      ok: false,
      reason: "corrupt",
      message: `${primary.message} (kept as ${corruptCopy})${also}`,
      ...copy,
    };
  }
  if (backup.kind === "corrupt") return { ok: false, reason: "corrupt", message: backup.message };
  return { ok: false, reason: "missing", message: `${path} does not exist` };
}

/**
 * One state file with serialised writes: writes never overlap, and the last call wins. Calls that
 * arrive while a write is in flight are coalesced: only the newest data is written next, and every
 * waiting caller resolves (or rejects) with that write.
 */
export class StateFile {
  readonly path: string;
  readonly #options: StateFileOptions;
  /** The write in flight, if any. */
  #current: Promise<void> | undefined;
  /** The newest data waiting for the write in flight, and the promise its callers share. */
  #next: { data: unknown; promise: Promise<void> } | undefined;

  constructor(path: string, options: StateFileOptions = {}) {
    this.path = path;
    this.#options = options;
  }

  /**
   * Writes `data` (see {@link writeStateFile}) after any write in flight.
   * @throws the fs error of the write that carried this call's data (or newer data).
   */
  write(data: unknown): Promise<void> {
    if (this.#next !== undefined) {
      this.#next.data = data;
      return this.#next.promise;
    }
    if (this.#current === undefined) return this.#start(data);
    const after = this.#current.then(
      () => undefined,
      () => undefined,
    );
    const next: { data: unknown; promise: Promise<void> } = {
      data,
      promise: after.then(() => {
        this.#next = undefined;
        return this.#start(next.data);
      }),
    };
    this.#next = next;
    return next.promise;
  }

  /** Reads the file (see {@link readStateFile}). */
  read(): Promise<StateReadResult> {
    return readStateFile(this.path, this.#options);
  }

  #start(data: unknown): Promise<void> {
    const run = writeStateFile(this.path, data, this.#options);
    this.#current = run;
    const clear = (): void => {
      if (this.#current === run) this.#current = undefined;
    };
    run.then(clear, clear);
    return run;
  }
}
