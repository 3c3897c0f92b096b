/**
 * Reading `.zip` packages with yauzl: the listing pass reads only the central directory (no
 * entry is inflated), the extraction pass inflates each checked entry with yauzl's size
 * validation on, so an entry that inflates to more than it declares (a zip bomb that lies)
 * fails as it streams.
 */
import type { Readable } from "node:stream";
import yauzl from "yauzl";
import {
  type ArchiveListing,
  type EntryCatalog,
  type EntryKind,
  type EntryWriter,
  type PackageEntry,
  type PackageLimits,
  packageInvalid,
  showName,
} from "./archive-entries.ts";

/** `versionMadeBy` host system of entries whose external attributes hold a Unix mode. */
const UNIX_HOST = 3;

const S_IFMT = 0o170000;

function unixKind(mode: number): EntryKind | undefined {
  switch (mode & S_IFMT) {
    case 0:
      return undefined; // no type bits: decide by the name
    case 0o100000:
      return "file";
    case 0o040000:
      return "directory";
    case 0o120000:
      return "symlink";
    case 0o020000:
    case 0o060000:
      return "device";
    case 0o010000:
    case 0o140000:
      return "fifo";
    default:
      return "other";
  }
}

function classify(entry: yauzl.Entry): { kind: EntryKind; mode: number; detail?: string } {
  const unix = entry.versionMadeBy >> 8 === UNIX_HOST;
  const mode = unix ? (entry.externalFileAttributes >>> 16) & 0xffff : 0;
  const byName = entry.fileName.endsWith("/") ? "directory" : "file";
  const kind = (unix ? unixKind(mode) : undefined) ?? byName;
  if (kind === "file" && byName === "directory")
    return { kind: "other", mode, detail: "a file named like a directory" };
  return { kind, mode };
}

/**
 * yauzl's complaint (a bad name, a damaged directory, an entry inflating to more than it says)
 * as PACKAGE_INVALID; our own refusals and file-system errors (which carry a syscall) as they are.
 */
function zipProblem(error: unknown): Error {
  if (error instanceof Error && "code" in error && error.code === "PACKAGE_INVALID") return error;
  if (error instanceof Error && "syscall" in error) return error;
  const message = error instanceof Error ? error.message : String(error);
  return packageInvalid(`it is not a valid zip archive (${message})`);
}

async function openZip(file: string): Promise<yauzl.ZipFile> {
  try {
    return await yauzl.openPromise(file, {
      autoClose: false,
      decodeStrings: true,
      validateEntrySizes: true,
      // Backslashes are refused rather than taken for separators.
      strictFileNames: true,
    });
  } catch (error) {
    throw zipProblem(error);
  }
}

/** Checks what the zip can do for us besides the entry's kind: no encryption, known compression. */
function checkCodec(entry: yauzl.Entry): void {
  if (entry.isEncrypted()) {
    throw packageInvalid(`entry ${showName(entry.fileName)} is encrypted`);
  }
  if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
    throw packageInvalid(
      `entry ${showName(entry.fileName)} uses compression method ${entry.compressionMethod} (only stored and deflate are supported)`,
    );
  }
}

/** One central-directory entry and what the catalog made of it (undefined: skipped). */
interface ListedEntry {
  readonly entry: yauzl.Entry;
  readonly checked: PackageEntry | undefined;
}

/** Every entry of the central directory, checked by `catalog` as it is read. */
async function readDirectory(
  zip: yauzl.ZipFile,
  catalog: EntryCatalog,
  limits: PackageLimits,
  signal: AbortSignal,
): Promise<ListedEntry[]> {
  if (zip.entryCount > limits.maxEntries) {
    throw packageInvalid(`it has more than ${limits.maxEntries} entries (${zip.entryCount})`);
  }
  const entries: ListedEntry[] = [];
  try {
    for await (const entry of zip.eachEntry()) {
      signal.throwIfAborted();
      const { kind, mode, detail } = classify(entry);
      const checked = catalog.add({
        name: entry.fileName,
        kind,
        size: kind === "file" ? entry.uncompressedSize : 0,
        mode,
        ...(detail !== undefined && { detail }),
      });
      if (kind === "file") checkCodec(entry);
      entries.push({ entry, checked });
    }
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw zipProblem(error);
  }
  return entries;
}

async function openEntry(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Readable> {
  try {
    return await zip.openReadStreamPromise(entry);
  } catch (error) {
    throw zipProblem(error);
  }
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The listing pass: the central directory checked, nothing inflated but the definition. */
export async function listZip(
  file: string,
  catalog: EntryCatalog,
  limits: PackageLimits,
  maxDefinitionBytes: number,
  signal: AbortSignal,
): Promise<ArchiveListing> {
  const zip = await openZip(file);
  try {
    const entries = await readDirectory(zip, catalog, limits, signal);
    return {
      async definition(segments) {
        const wanted = segments.join("/");
        const found = entries.find(
          ({ checked }) => checked?.kind === "file" && checked.segments.join("/") === wanted,
        );
        if (found === undefined) return undefined;
        const { entry } = found;
        if (entry.uncompressedSize > maxDefinitionBytes) return "too large";
        try {
          return await readAll(await openEntry(zip, entry));
        } catch (error) {
          throw zipProblem(error);
        }
      },
      close: async () => zip.close(),
    };
  } catch (error) {
    zip.close();
    throw error;
  }
}

/** The extraction pass: every entry checked again and inflated into `writer`. */
export async function extractZip(
  file: string,
  catalog: EntryCatalog,
  limits: PackageLimits,
  writer: EntryWriter,
  signal: AbortSignal,
): Promise<void> {
  const zip = await openZip(file);
  try {
    const entries = await readDirectory(zip, catalog, limits, signal);
    for (const { entry, checked } of entries) {
      signal.throwIfAborted();
      if (checked === undefined) continue; // skipped: the root itself, __MACOSX
      if (checked.kind === "directory") {
        await writer.directory(checked);
        continue;
      }
      try {
        await writer.file(checked, await openEntry(zip, entry));
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        throw zipProblem(error);
      }
    }
  } finally {
    zip.close();
  }
}
