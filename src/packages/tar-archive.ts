/**
 * Reading `.tar.gz` packages with node-tar's parser (npm's own tar implementation): a listing
 * pass that checks every entry header before anything is written, and an extraction pass that
 * writes the checked files itself (node-tar's own extractor would keep owners, modes and links;
 * we keep none of them). Decompressed bytes are counted as they come out of gunzip, so a gzip
 * bomb stops at the bound instead of being inflated to its end.
 */
import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import {
  type ArchiveListing,
  type EntryCatalog,
  type EntryKind,
  type EntryWriter,
  type PackageLimits,
  packageInvalid,
  showName,
} from "./archive-entries.ts";
import { ByteCount } from "./byte-count.ts";

/** Bytes of tar structure (headers, padding, PAX records) allowed on top of the files' sizes. */
function structureAllowance(limits: PackageLimits): number {
  // A header and up to a block of padding per entry, a PAX record per entry, and 4 MiB of slack.
  return limits.maxEntries * 3 * 512 + 4 * 1024 * 1024;
}

function entryKind(type: string): { kind: EntryKind; detail?: string } {
  switch (type) {
    case "File":
    case "OldFile":
    case "ContiguousFile":
      return { kind: "file" };
    case "Directory":
      return { kind: "directory" };
    case "SymbolicLink":
      return { kind: "symlink" };
    case "Link":
      return { kind: "hardlink" };
    case "CharacterDevice":
    case "BlockDevice":
      return { kind: "device" };
    case "FIFO":
      return { kind: "fifo" };
    default:
      return { kind: "other", detail: `tar type ${type}` };
  }
}

/**
 * Feeds the archive at `file` through gunzip into a strict node-tar parser and calls `onEntry`
 * for every entry, waiting for the promise it returns (the parser does not move on to the next
 * entry until the current one has been consumed). Rejects with PACKAGE_INVALID for a damaged
 * archive, with what `onEntry` threw, or with `signal`'s reason.
 */
function walkTarGz(
  file: string,
  limits: PackageLimits,
  signal: AbortSignal,
  onEntry: (entry: ReadEntry) => Promise<void>,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const source = createReadStream(file);
    const gunzip = createGunzip();
    // Counts decompressed bytes.
    const limit = new ByteCount(limits.maxUnpackedBytes + structureAllowance(limits), () =>
      packageInvalid("it unpacks to more than the 1 GiB limit"),
    );
    let failed = false;
    const fail = (error: unknown): void => {
      if (failed) return;
      failed = true;
      signal.removeEventListener("abort", onAbort);
      source.destroy();
      gunzip.destroy();
      limit.destroy();
      parser.abort(error instanceof Error ? error : new Error(String(error)));
      reject(error);
    };
    const onAbort = (): void => fail(signal.reason);
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        if (failed) {
          entry.resume();
          return;
        }
        // The parser waits for this entry's 'end' before the next: pause it until we are done.
        entry.pause();
        onEntry(entry).then(
          () => entry.resume(),
          (error: unknown) => fail(error),
        );
      },
    });
    parser.on("ignoredEntry", (entry: ReadEntry) => {
      fail(
        packageInvalid(
          `entry ${showName(entry.path)} is of an unsupported kind (tar type ${entry.type})`,
        ),
      );
    });
    parser.on("error", (error: Error) => fail(tarProblem(error)));
    parser.on("warn", (_code: string, message: string | Error) => fail(tarProblem(message)));
    parser.on("end", () => {
      if (failed) return;
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
    source.on("error", fail);
    gunzip.on("error", (error: Error) =>
      fail(packageInvalid(`it is not a valid gzip stream (${error.message})`)),
    );
    limit.on("error", fail);
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    source
      .pipe(gunzip)
      .pipe(limit)
      .pipe(parser as unknown as NodeJS.WritableStream);
  });
}

function tarProblem(error: string | Error): Error {
  if (error instanceof Error && "code" in error && error.code === "PACKAGE_INVALID") return error;
  const message = error instanceof Error ? error.message : error;
  return packageInvalid(`it is not a valid tar archive (${message})`);
}

function rawEntry(entry: ReadEntry) {
  const { kind, detail } = entryKind(entry.type);
  return {
    name: entry.path,
    kind,
    size: kind === "file" ? entry.size : 0,
    mode: entry.mode ?? 0o644,
    ...(detail !== undefined && { detail }),
  };
}

/** Reads at most `max` bytes of `entry`'s content; undefined when it is larger. */
async function readSmall(entry: ReadEntry, max: number): Promise<Buffer | undefined> {
  if (entry.size > max) {
    entry.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  entry.on("data", (chunk: Buffer) => chunks.push(chunk));
  await new Promise<void>((resolve, reject) => {
    entry.on("end", resolve);
    entry.on("error", reject);
    entry.resume();
  });
  return Buffer.concat(chunks);
}

/**
 * The listing pass: every entry checked by `catalog`, nothing written; the contents of the
 * definition files that can matter (at the root, or in the first top-level folder) kept, each
 * up to `maxDefinitionBytes`.
 */
export async function listTarGz(
  file: string,
  catalog: EntryCatalog,
  limits: PackageLimits,
  maxDefinitionBytes: number,
  signal: AbortSignal,
): Promise<ArchiveListing> {
  const definitions = new Map<string, Buffer | "too large">();
  let firstTop: string | undefined;
  await walkTarGz(file, limits, signal, async (entry) => {
    const checked = catalog.add(rawEntry(entry));
    const segments = checked?.segments ?? [];
    firstTop ??= segments.length > 1 || checked?.kind === "directory" ? segments[0] : undefined;
    const wanted =
      checked?.kind === "file" &&
      (segments.length === 1 || (segments.length === 2 && segments[0] === firstTop)) &&
      (segments.at(-1) === "agent.toml" || segments.at(-1) === "agent.json");
    if (!wanted) {
      entry.resume();
      return;
    }
    const content = await readSmall(entry, maxDefinitionBytes);
    definitions.set(segments.join("/"), content ?? "too large");
  });
  return {
    definition: async (segments) => definitions.get(segments.join("/")),
    close: async () => {},
  };
}

/**
 * The extraction pass: walks the archive again, checks each entry against the listing (the
 * archive is our own copy on disk, so any difference is a bug or tampering), and hands each
 * one to `writer`.
 */
export async function extractTarGz(
  file: string,
  catalog: EntryCatalog,
  limits: PackageLimits,
  writer: EntryWriter,
  signal: AbortSignal,
): Promise<void> {
  await walkTarGz(file, limits, signal, async (entry) => {
    const checked = catalog.add(rawEntry(entry));
    if (checked === undefined) {
      entry.resume();
      return;
    }
    if (checked.kind === "directory") {
      entry.resume();
      await writer.directory(checked);
      return;
    }
    // The entry is paused; the writer consumes it (flow control through pipeline()).
    await writer.file(checked, entry as unknown as NodeJS.ReadableStream);
  });
}
