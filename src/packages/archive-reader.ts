/**
 * One reader for both package formats: tells the format by its first bytes, lists and checks
 * every entry (nothing written), then extracts the checked entries into a directory that must
 * not exist yet, writing each file itself: created exclusively (never through an existing file
 * or link), mode 0644 or 0755 (the archive's executable bit, nothing else: no owner, no setuid),
 * its bytes counted against the listing.
 */
import { mkdir, open } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { PackageFormat } from "../core/agent-status.ts";
import {
  type ArchiveLayout,
  EntryCatalog,
  type EntryWriter,
  type PackageEntry,
  type PackageLimits,
  packageInvalid,
  relativeSegments,
  showName,
} from "./archive-entries.ts";
import { ByteCount } from "./byte-count.ts";
import { extractTarGz, listTarGz } from "./tar-archive.ts";
import { extractZip, listZip } from "./zip-archive.ts";

/** The result of checking an archive: its entries, layout and definition. */
export interface CheckedArchive {
  readonly format: PackageFormat;
  readonly entries: number;
  readonly unpackedBytes: number;
  readonly layout: ArchiveLayout;
  /** Text of the definition file (UTF-8). */
  readonly definitionText: string;
}

/** Most bytes of a definition file (as discovery allows, `MAX_DEFINITION_BYTES`). */
export const MAX_DEFINITION_BYTES = 1024 * 1024;

/**
 * The format of an archive from its first bytes: gzip (1f 8b) is `.tar.gz`, `PK\x03\x04` or an
 * empty zip's `PK\x05\x06` is `.zip`. A `declared` format must agree.
 * @throws PACKAGE_INVALID for anything else.
 */
export function detectFormat(head: Uint8Array, declared: PackageFormat | undefined): PackageFormat {
  const isGzip = head[0] === 0x1f && head[1] === 0x8b;
  const isZip =
    head[0] === 0x50 &&
    head[1] === 0x4b &&
    ((head[2] === 0x03 && head[3] === 0x04) || (head[2] === 0x05 && head[3] === 0x06));
  const detected: PackageFormat | undefined = isGzip ? "tar.gz" : isZip ? "zip" : undefined;
  if (detected === undefined) {
    throw packageInvalid("it is neither a .tar.gz nor a .zip archive");
  }
  if (declared !== undefined && declared !== detected) {
    throw packageInvalid(`the header says ${declared} but the archive is a ${detected}`);
  }
  return detected;
}

/**
 * The listing pass over the archive at `file`: every entry checked, the layout found, the
 * definition read. Writes nothing.
 * @throws PACKAGE_INVALID, or `signal`'s reason.
 */
export async function checkArchive(
  file: string,
  format: PackageFormat,
  limits: PackageLimits,
  signal: AbortSignal,
): Promise<CheckedArchive> {
  const catalog = new EntryCatalog(limits);
  const listing =
    format === "zip"
      ? await listZip(file, catalog, limits, MAX_DEFINITION_BYTES, signal)
      : await listTarGz(file, catalog, limits, MAX_DEFINITION_BYTES, signal);
  try {
    const layout = catalog.layout();
    const definitionPath = [...layout.root, layout.definitionFile];
    const content = await listing.definition(definitionPath);
    if (content === undefined) {
      throw packageInvalid(`${showName(definitionPath.join("/"))} could not be read`);
    }
    if (content === "too large") {
      throw packageInvalid(
        `${showName(definitionPath.join("/"))} is larger than ${MAX_DEFINITION_BYTES} bytes`,
      );
    }
    return {
      format,
      entries: catalog.count,
      unpackedBytes: catalog.unpackedBytes,
      layout,
      definitionText: content.toString("utf8"),
    };
  } finally {
    await listing.close();
  }
}

/** Counts the bytes of one file against what the archive declared. */
function declaredSize(entry: PackageEntry): ByteCount {
  const shown = showName(entry.segments.join("/"));
  return new ByteCount(
    entry.size,
    () => packageInvalid(`entry ${shown} holds more bytes than it declares`),
    () => packageInvalid(`entry ${shown} holds fewer bytes than it declares`),
  );
}

/** Writes checked entries under `dest`, which the first write creates. */
function writerInto(dest: string, layout: ArchiveLayout, signal: AbortSignal): EntryWriter {
  const made = new Set<string>();
  const ensureDir = async (dir: string): Promise<void> => {
    if (made.has(dir)) return;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    made.add(dir);
  };
  const target = (entry: PackageEntry): string | undefined => {
    const segments = relativeSegments(entry, layout);
    return segments.length === 0 ? undefined : path.join(dest, ...segments);
  };
  return {
    async directory(entry) {
      const dir = target(entry);
      if (dir !== undefined) await ensureDir(dir);
    },
    async file(entry, content) {
      const file = target(entry);
      if (file === undefined) throw packageInvalid("a file entry has no name");
      await ensureDir(path.dirname(file));
      // "wx": O_CREAT | O_EXCL, so a file is never written through something already there.
      const handle = await open(file, "wx", entry.executable ? 0o755 : 0o644);
      await pipeline(content, declaredSize(entry), handle.createWriteStream(), { signal });
    },
  };
}

/**
 * The extraction pass: the archive's entries, checked again, written into `dest` (created; must
 * not exist). The caller removes `dest` when this fails.
 * @throws PACKAGE_INVALID, a file-system error, or `signal`'s reason.
 */
export async function extractArchive(
  file: string,
  checked: CheckedArchive,
  limits: PackageLimits,
  dest: string,
  signal: AbortSignal,
): Promise<void> {
  await mkdir(dest, { mode: 0o755 });
  const catalog = new EntryCatalog(limits);
  const writer = writerInto(dest, checked.layout, signal);
  if (checked.format === "zip") await extractZip(file, catalog, limits, writer, signal);
  else await extractTarGz(file, catalog, limits, writer, signal);
  if (catalog.count !== checked.entries || catalog.unpackedBytes !== checked.unpackedBytes) {
    throw packageInvalid("the archive changed between its listing and its extraction");
  }
}
