/**
 * The package as a user gets it: `npm pack` of this checkout (dist/ is built by the vitest
 * global set-up) installed with `npm install -g --prefix <tmp>`, as SPEC §10 says users install
 * it. Dependencies come from npm's cache when it has them (after `npm ci` it does) and from the
 * registry otherwise.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

export const REPO = fileURLToPath(new URL("../..", import.meta.url));

export interface InstalledPackage {
  readonly dir: string;
  readonly tarball: string;
  /** `<prefix>/bin`, holding the `atoll-deploy` and `atoll-agent` links. */
  readonly binDir: string;
  /** `<prefix>/lib/node_modules/atoll-deploy`. */
  readonly packageDir: string;
  remove(): Promise<void>;
}

/** Packs the checkout and installs the tarball into a fresh prefix. */
export async function packAndInstall(): Promise<InstalledPackage> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-package-"));
  try {
    // --ignore-scripts: prepack would rebuild dist/ under the feet of tests running in parallel.
    const packed = await run(
      "npm",
      ["pack", "--ignore-scripts", "--silent", "--pack-destination", dir],
      { cwd: REPO },
    );
    const tarball = path.join(dir, packed.stdout.trim().split("\n").at(-1) ?? "");
    const prefix = path.join(dir, "prefix");
    await run(
      "npm",
      [
        "install",
        "--global",
        "--prefix",
        prefix,
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        "--loglevel",
        "error",
        tarball,
      ],
      { cwd: dir, timeout: 240_000 },
    );
    return {
      dir,
      tarball,
      binDir: path.join(prefix, "bin"),
      packageDir: path.join(prefix, "lib", "node_modules", "atoll-deploy"),
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** Every file below `root`, relative, sorted. */
export async function filesBelow(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() || entry.isSymbolicLink())
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)))
    .sort();
}

/** The tarball's file list, without the `package/` prefix. */
export async function tarballFiles(tarball: string): Promise<string[]> {
  const { stdout } = await run("tar", ["tzf", tarball]);
  return stdout
    .trim()
    .split("\n")
    .map((line) => line.replace(/^package\//, ""))
    .sort();
}
