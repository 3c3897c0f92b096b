/**
 * The checks of SPEC §12 on the entries of an agent package, independent of the archive format:
 * names (no absolute path, no `..`, no control character), kinds (files and directories only:
 * no link, device or FIFO), the entry count and unpacked size, duplicates, and where the one
 * definition is (at the root or in a single top-level folder). Pure: the readers in
 * `tar-archive.ts` and `zip-archive.ts` feed it what the archive says, before anything is
 * written, and again while they extract.
 */
import { DeployError } from "../core/errors.ts";

/** The bounds on one package (SPEC §12). */
export interface PackageLimits {
  /** Largest archive, compressed, in bytes (`max_package_bytes`). */
  readonly maxPackageBytes: number;
  /** Largest total size of the files unpacked, in bytes (1 GiB). */
  readonly maxUnpackedBytes: number;
  /** Most entries, files and directories (10,000). */
  readonly maxEntries: number;
}

/** SPEC §12: 1 GiB unpacked. */
export const MAX_UNPACKED_BYTES = 1024 * 1024 * 1024;
/** SPEC §12: 10,000 entries. */
export const MAX_ENTRIES = 10_000;

/** Longest name of one path segment, bytes (NAME_MAX on Linux). */
const MAX_SEGMENT_BYTES = 255;
/** Longest entry path, bytes (PATH_MAX on Linux, well above any real package). */
const MAX_PATH_BYTES = 4096;

/** Definition file names, in order of precedence (SPEC §2). */
export const DEFINITION_FILES = ["agent.toml", "agent.json"] as const;

/**
 * Directories that macOS's archiver adds beside the real content; skipped (never extracted) so
 * that a zip made in the Finder still has a single top-level folder.
 */
const IGNORED_TOP_LEVEL = new Set(["__MACOSX"]);

/** A refusal: DeployError PACKAGE_INVALID with `cause` as its message. */
export function packageInvalid(cause: string, metadata: Record<string, string> = {}): DeployError {
  return new DeployError("PACKAGE_INVALID", `package refused: ${cause}`, metadata);
}

/** Shown in messages: quoted, control characters escaped, long names cut. */
export function showName(name: string): string {
  const cut = name.length > 120 ? `${name.slice(0, 120)}…` : name;
  return JSON.stringify(cut);
}

/**
 * The path segments of an entry name, `.` and empty segments dropped (`./a//b/` → `a`, `b`).
 * @throws PACKAGE_INVALID for an absolute path (leading `/`, a drive letter), a `..` segment, a
 *   backslash, a control character, or an overlong name.
 */
export function entrySegments(name: string): string[] {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw packageInvalid(`entry ${showName(name)} has a control character in its name`);
  }
  if (name.includes("\\")) {
    throw packageInvalid(`entry ${showName(name)} has a backslash in its name`);
  }
  if (name.startsWith("/") || /^[A-Za-z]:/.test(name)) {
    throw packageInvalid(`entry ${showName(name)} has an absolute path`);
  }
  if (Buffer.byteLength(name) > MAX_PATH_BYTES) {
    throw packageInvalid(`entry ${showName(name)} has a path longer than ${MAX_PATH_BYTES} bytes`);
  }
  const segments = name.split("/").filter((segment) => segment !== "" && segment !== ".");
  for (const segment of segments) {
    if (segment === "..") {
      throw packageInvalid(`entry ${showName(name)} leaves the package with ".."`);
    }
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) {
      throw packageInvalid(
        `entry ${showName(name)} has a name longer than ${MAX_SEGMENT_BYTES} bytes`,
      );
    }
  }
  return segments;
}

/** What an archive says one entry is, once its format's own kinds are mapped. */
export type EntryKind = "file" | "directory" | "symlink" | "hardlink" | "device" | "fifo" | "other";

/** One entry as the archive describes it. */
export interface RawEntry {
  readonly name: string;
  readonly kind: EntryKind;
  /** Declared size of the file's content in bytes (0 for directories). */
  readonly size: number;
  /** Permission bits from the archive (only the executable bits are kept). */
  readonly mode: number;
  /** For `other`: the format's own name of the kind, for the message. */
  readonly detail?: string;
}

/** A checked entry: a file or directory at a safe relative path. */
export interface PackageEntry {
  /** Segments of the path inside the archive. */
  readonly segments: readonly string[];
  readonly kind: "file" | "directory";
  readonly size: number;
  readonly executable: boolean;
}

function kindProblem(entry: RawEntry): string | undefined {
  switch (entry.kind) {
    case "file":
    case "directory":
      return undefined;
    case "symlink":
      return "is a symbolic link (packages hold files and directories only)";
    case "hardlink":
      return "is a hard link (packages hold files and directories only)";
    case "device":
      return "is a device (packages hold files and directories only)";
    case "fifo":
      return "is a FIFO or socket (packages hold files and directories only)";
    default:
      return `is of an unsupported kind${entry.detail === undefined ? "" : ` (${entry.detail})`}`;
  }
}

/** Where the package's definition is and what its agent directory holds. */
export interface ArchiveLayout {
  /** Segments to strip from every entry: `[]` (definition at the root) or `[folder]`. */
  readonly root: readonly string[];
  /** `agent.toml` or `agent.json` (the first of them present; both: agent.toml, as in §2). */
  readonly definitionFile: (typeof DEFINITION_FILES)[number];
  /** The top-level folder's name when there is one: the agent's name if the file gives none. */
  readonly folderName: string | undefined;
}

/**
 * Collects the entries of one archive, checking each as it comes (kind, name, duplicates, files
 * under files, the entry count, the total size), then finds the layout. A reader adds every
 * entry, the skipped ones too, so the counts cover the whole archive.
 */
export class EntryCatalog {
  readonly #limits: PackageLimits;
  readonly #entries: PackageEntry[] = [];
  /** Path → kind, for duplicates and for files that would have to be directories. */
  readonly #kinds = new Map<string, "file" | "directory">();
  #count = 0;
  #unpackedBytes = 0;

  constructor(limits: PackageLimits) {
    this.#limits = limits;
  }

  /** Entries counted so far (every entry, skipped ones included). */
  get count(): number {
    return this.#count;
  }

  /** Declared size of the files so far, bytes. */
  get unpackedBytes(): number {
    return this.#unpackedBytes;
  }

  get entries(): readonly PackageEntry[] {
    return this.#entries;
  }

  /**
   * Checks `raw` and records it; undefined for an entry that is skipped (the root itself, and
   * macOS's `__MACOSX` folder).
   * @throws PACKAGE_INVALID on the first problem.
   */
  add(raw: RawEntry): PackageEntry | undefined {
    this.#count += 1;
    if (this.#count > this.#limits.maxEntries) {
      throw packageInvalid(`it has more than ${this.#limits.maxEntries} entries`);
    }
    const problem = kindProblem(raw);
    if (problem !== undefined) throw packageInvalid(`entry ${showName(raw.name)} ${problem}`);
    const segments = entrySegments(raw.name);
    const kind = raw.kind as "file" | "directory";
    if (segments.length === 0) {
      if (kind === "file")
        throw packageInvalid(`entry ${showName(raw.name)} is a file without a name`);
      return undefined;
    }
    if (IGNORED_TOP_LEVEL.has(segments[0] ?? "")) return undefined;
    if (kind === "file") {
      if (!Number.isSafeInteger(raw.size) || raw.size < 0) {
        throw packageInvalid(`entry ${showName(raw.name)} has an impossible size`);
      }
      this.#unpackedBytes += raw.size;
      if (this.#unpackedBytes > this.#limits.maxUnpackedBytes) {
        throw packageInvalid(
          `it unpacks to more than ${this.#limits.maxUnpackedBytes} bytes (the limit is 1 GiB)`,
        );
      }
    }
    this.#claim(segments, kind, raw.name);
    const entry: PackageEntry = {
      segments,
      kind,
      size: kind === "file" ? raw.size : 0,
      executable: kind === "file" && (raw.mode & 0o111) !== 0,
    };
    this.#entries.push(entry);
    return entry;
  }

  /** Records the path and its parents; refuses a second entry of a path or a file as parent. */
  #claim(segments: readonly string[], kind: "file" | "directory", name: string): void {
    for (let depth = 1; depth < segments.length; depth++) {
      const parent = segments.slice(0, depth).join("/");
      const existing = this.#kinds.get(parent);
      if (existing === "file") {
        throw packageInvalid(
          `entry ${showName(name)} is inside ${showName(parent)}, which is a file`,
        );
      }
      if (existing === undefined) this.#kinds.set(parent, "directory");
    }
    const key = segments.join("/");
    const existing = this.#kinds.get(key);
    if (existing === "file" || (existing === "directory" && kind === "file")) {
      throw packageInvalid(`entry ${showName(name)} appears more than once`);
    }
    this.#kinds.set(key, kind);
  }

  /**
   * Where the definition is: `agent.toml`/`agent.json` at the root, else in the single
   * top-level folder. Refuses a package without one, and one that ships a `.venv` (the server
   * makes it from requirements.txt; one built elsewhere would run foreign binaries).
   * @throws PACKAGE_INVALID
   */
  layout(): ArchiveLayout {
    const rootFile = DEFINITION_FILES.find((file) => this.#kinds.get(file) === "file");
    let layout: ArchiveLayout | undefined;
    if (rootFile !== undefined) {
      layout = { root: [], definitionFile: rootFile, folderName: undefined };
    } else {
      const tops = new Set(this.#entries.map((entry) => entry.segments[0] ?? ""));
      const [top] = tops;
      if (tops.size === 1 && top !== undefined && this.#kinds.get(top) === "directory") {
        const nested = DEFINITION_FILES.find(
          (file) => this.#kinds.get(`${top}/${file}`) === "file",
        );
        if (nested !== undefined) layout = { root: [top], definitionFile: nested, folderName: top };
      }
    }
    if (layout === undefined) {
      throw packageInvalid(
        "no agent.toml or agent.json at the root of the archive or in its single top-level folder",
      );
    }
    const prefix = layout.root.length === 0 ? "" : `${layout.root[0]}/`;
    if (this.#kinds.has(`${prefix}.venv`)) {
      throw packageInvalid(
        `it contains ${showName(`${prefix}.venv`)}: the server makes the virtual environment from requirements.txt; leave .venv out`,
      );
    }
    return layout;
  }
}

/** What a listing pass leaves for later: the definition's content, and the open archive. */
export interface ArchiveListing {
  /** Content of the file at `segments`, "too large", or undefined when it is not a file. */
  definition(segments: readonly string[]): Promise<Buffer | "too large" | undefined>;
  /** Releases what the listing holds open. */
  close(): Promise<void>;
}

/** Receives the checked entries of an extraction pass, in archive order. */
export interface EntryWriter {
  directory(entry: PackageEntry): Promise<void>;
  /** Writes the file from `content`, which it must consume to its end. */
  file(entry: PackageEntry, content: NodeJS.ReadableStream | AsyncIterable<Buffer>): Promise<void>;
}

/** The path of `entry` inside the agent's directory (the layout's root stripped). */
export function relativeSegments(entry: PackageEntry, layout: ArchiveLayout): readonly string[] {
  return entry.segments.slice(layout.root.length);
}
