/**
 * Where installed packages live on disk (docs/packages.md, "Layout"):
 *
 * ```
 * <state_dir>/packages/
 *   <name>                      -> .store/<name>/<version>   the installed agent (a relative link)
 *   .store/<name>/<version>/    one unpacked, provisioned version (node_modules, .venv inside)
 *   .store/<name>/<version>.json   its facts: checksum, time, sizes, provisioning steps
 *   .staging/<upload>/          uploads being received and checked
 * ```
 *
 * An install unpacks into a new version directory, which nothing points at until the link
 * `<name>` is replaced by a rename (atomic); a running agent keeps its own version's directory
 * (its cwd, `{config}`, `{dir}`, its `.venv`) until it stops, and only then is that version
 * deleted. Discovery lists `<name>` entries (hidden ones are skipped) and resolves the link.
 */
import { randomBytes } from "node:crypto";
import { open, readFile, readlink, rename, rm, symlink } from "node:fs/promises";
import path from "node:path";
import type {
  InstalledPackageInfo,
  PackageFormat,
  ProvisioningStep,
} from "../core/agent-status.ts";

/** Paths of one packages directory. */
export class PackageLayout {
  /** `<state_dir>/packages`. */
  readonly root: string;
  readonly store: string;
  readonly staging: string;

  constructor(stateDir: string) {
    this.root = path.join(path.resolve(stateDir), "packages");
    this.store = path.join(this.root, ".store");
    this.staging = path.join(this.root, ".staging");
  }

  /** The link naming the installed version of `name`. */
  link(name: string): string {
    return path.join(this.root, name);
  }

  /** Versions of `name`. */
  versions(name: string): string {
    return path.join(this.store, name);
  }

  versionDir(name: string, version: string): string {
    return path.join(this.store, name, version);
  }

  metaFile(versionDir: string): string {
    return `${versionDir}.json`;
  }

  /** A new version id: time, the checksum's start, and a random part (never reused). */
  newVersion(sha256: string, nowMs: number): string {
    return `v${nowMs.toString(36)}-${sha256.slice(0, 12)}-${randomBytes(3).toString("hex")}`;
  }

  /**
   * The installed version of `name`: the link's target directory, or undefined when `name` is
   * not installed (no link, or a link that does not point into the store).
   */
  async current(name: string): Promise<string | undefined> {
    let target: string;
    try {
      target = await readlink(this.link(name));
    } catch {
      return undefined;
    }
    const resolved = path.resolve(this.root, target);
    return path.dirname(resolved) === this.versions(name) ? resolved : undefined;
  }

  /**
   * Points `<name>` at `versionDir`, replacing any previous link in one rename, so discovery
   * sees the old version or the new one, never neither.
   */
  async activate(name: string, versionDir: string, tempDir: string): Promise<void> {
    const temp = path.join(tempDir, `link-${randomBytes(4).toString("hex")}`);
    await symlink(path.relative(this.root, versionDir), temp);
    await rename(temp, this.link(name));
    await syncDirectory(this.root);
  }

  /** Removes the link `<name>` (the package is then no longer discovered). */
  async deactivate(name: string): Promise<void> {
    await rm(this.link(name), { force: true });
    await syncDirectory(this.root);
  }
}

/** The facts kept beside a version directory. */
export interface PackageMeta extends InstalledPackageInfo {
  readonly name: string;
}

/** Writes `meta` to `file` durably (write, fsync) before the version goes live. */
export async function writeMeta(file: string, meta: PackageMeta): Promise<void> {
  const handle = await open(file, "wx", 0o644);
  try {
    await handle.writeFile(`${JSON.stringify({ ...meta, layout: 1 }, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

const FORMATS: readonly PackageFormat[] = ["tar.gz", "zip"];
const STEPS: readonly ProvisioningStep[] = ["npm", "venv"];

/** The facts of the version in `versionDir`, or undefined when they are missing or unreadable. */
export async function readMeta(
  layout: PackageLayout,
  versionDir: string,
): Promise<PackageMeta | undefined> {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(await readFile(layout.metaFile(versionDir), "utf8")) as Record<
      string,
      unknown
    >;
  } catch {
    return undefined;
  }
  const { name, sha256, installedAtMs, format, archiveBytes, unpackedBytes, entries, provisioned } =
    data;
  const numbers = [installedAtMs, archiveBytes, unpackedBytes, entries];
  if (
    typeof name !== "string" ||
    typeof sha256 !== "string" ||
    !numbers.every((n) => typeof n === "number" && Number.isSafeInteger(n)) ||
    !FORMATS.includes(format as PackageFormat) ||
    !Array.isArray(provisioned) ||
    !provisioned.every((step) => STEPS.includes(step as ProvisioningStep))
  ) {
    return undefined;
  }
  return Object.freeze({
    name,
    sha256,
    installedAtMs: installedAtMs as number,
    format: format as PackageFormat,
    archiveBytes: archiveBytes as number,
    unpackedBytes: unpackedBytes as number,
    entries: entries as number,
    provisioned: Object.freeze([...(provisioned as ProvisioningStep[])]),
  });
}

/** fsync of a directory, so a rename in it survives a crash; best effort where unsupported. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(dir, "r");
    await handle.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    await handle?.close();
  }
}
