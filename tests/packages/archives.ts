/**
 * Real archives built in tests, hostile ones included: tar entries are encoded with node-tar's
 * own Header class (any name, type or link), zips with fflate (any name and external
 * attributes), so a test can make exactly the archive an attacker would send.
 */
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { type ZipOptions, zipSync } from "fflate";
import { Header } from "tar";

export interface TarEntry {
  readonly name: string;
  /** node-tar type name; default File (Directory when the name ends with "/"). */
  readonly type?:
    | "File"
    | "Directory"
    | "SymbolicLink"
    | "Link"
    | "CharacterDevice"
    | "BlockDevice"
    | "FIFO";
  readonly content?: string | Uint8Array;
  readonly mode?: number;
  readonly linkpath?: string;
  /** Size written in the header (default: the content's length). */
  readonly size?: number;
}

function bytesOf(content: string | Uint8Array | undefined): Uint8Array {
  if (content === undefined) return new Uint8Array(0);
  return typeof content === "string" ? Buffer.from(content) : content;
}

/** An uncompressed tar of `entries`, in order. */
export function tar(entries: readonly TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = bytesOf(entry.content);
    const type = entry.type ?? (entry.name.endsWith("/") ? "Directory" : "File");
    const header = new Header({
      path: entry.name,
      mode: entry.mode ?? (type === "Directory" ? 0o755 : 0o644),
      uid: 0,
      gid: 0,
      size: entry.size ?? (type === "File" ? data.length : 0),
      mtime: new Date(0),
      type,
      ...(entry.linkpath !== undefined && { linkpath: entry.linkpath }),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (type === "File" && data.length > 0) {
      blocks.push(Buffer.from(data), Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export function tarGz(entries: readonly TarEntry[]): Buffer {
  return gzipSync(tar(entries));
}

export interface ZipEntry {
  readonly name: string;
  readonly content?: string | Uint8Array;
  /** Unix mode with type bits (0o100644 a file, 0o120777 a symlink); default a plain file. */
  readonly unixMode?: number;
}

export function zip(entries: readonly ZipEntry[], level: ZipOptions["level"] = 6): Buffer {
  const files: Record<string, [Uint8Array, ZipOptions]> = {};
  for (const entry of entries) {
    const mode = entry.unixMode ?? (entry.name.endsWith("/") ? 0o040755 : 0o100644);
    files[entry.name] = [
      bytesOf(entry.content),
      { os: 3, attrs: (mode << 16) >>> 0, level, mtime: new Date(2000, 0, 1) },
    ];
  }
  return Buffer.from(zipSync(files));
}

/**
 * Rewrites the uncompressed size of every entry of `archive` (local headers and central
 * directory) to `size`: a zip whose directory lies about what its entries inflate to.
 */
export function withDeclaredSize(archive: Buffer, size: number): Buffer {
  const out = Buffer.from(archive);
  for (let i = 0; i + 30 <= out.length; i++) {
    const signature = out.readUInt32LE(i);
    if (signature === 0x04034b50) out.writeUInt32LE(size, i + 22);
    else if (signature === 0x02014b50) out.writeUInt32LE(size, i + 24);
  }
  return out;
}

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A definition for a package agent run by the fault-agent fixture with fast test timings. */
export function packageToml(
  name: string | undefined,
  command: readonly string[],
  extra = "",
): string {
  return `[agent]
${name === undefined ? "" : `name = "${name}"\n`}version = "1.0.0"

[deployment]
command = ${JSON.stringify(command)}
health_check_interval = 0.2
start_timeout = 30
stop_timeout = 2
${extra}
`;
}
