/**
 * Packing an agent directory into a `.tar.gz` package (the CLI's `install <dir>`): the files
 * under a single top-level folder named after the directory (so the folder names the agent
 * when its definition gives no name), minus what `.atollignore` (gitignore patterns, read with
 * the `ignore` library) and the defaults exclude. The archive is reproducible: entries sorted,
 * times zeroed, no owners, so packing the same files twice gives the same SHA-256 and a repeated
 * install answers "already installed".
 */
import { lstat, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import ignore, { type Ignore } from "ignore";
import { create as createTar } from "tar";

/** Always left out: version control, and what the server rebuilds (node_modules, .venv). */
export const DEFAULT_IGNORES: readonly string[] = [
  ".git/",
  "node_modules/",
  ".venv/",
  "__pycache__/",
];

/** The name of the ignore file at the root of an agent directory. */
export const IGNORE_FILE = ".atollignore";

/** A directory that cannot be packed (no definition, a link inside, unreadable). */
export class PackError extends Error {
  override readonly name = "PackError";
}

/** What was packed. */
export interface PackResult {
  /** Paths packed, relative to the directory (directories end with "/"), sorted. */
  readonly entries: readonly string[];
}

async function readIgnore(dir: string): Promise<Ignore> {
  const matcher = ignore().add([...DEFAULT_IGNORES]);
  try {
    matcher.add(await readFile(path.join(dir, IGNORE_FILE), "utf8"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new PackError(
        `cannot read ${path.join(dir, IGNORE_FILE)}: ${(error as Error).message}`,
      );
    }
  }
  return matcher;
}

/** Every path to pack under `dir`, relative, sorted; refuses links and special files. */
async function collect(dir: string, matcher: Ignore, rel = ""): Promise<string[]> {
  const names = (await readdir(path.join(dir, rel))).sort();
  const out: string[] = [];
  for (const name of names) {
    const relPath = rel === "" ? name : `${rel}/${name}`;
    const info = await lstat(path.join(dir, relPath));
    if (info.isDirectory()) {
      if (matcher.ignores(`${relPath}/`)) continue;
      out.push(`${relPath}/`, ...(await collect(dir, matcher, relPath)));
    } else if (matcher.ignores(relPath)) {
    } else if (info.isSymbolicLink()) {
      throw new PackError(
        `${path.join(dir, relPath)} is a symbolic link; packages hold files and directories only (copy the file, or list it in ${IGNORE_FILE})`,
      );
    } else if (info.isFile()) {
      out.push(relPath);
    } else {
      throw new PackError(`${path.join(dir, relPath)} is not a regular file or directory`);
    }
  }
  return out;
}

/**
 * Packs the agent directory `dir` into the `.tar.gz` file `out`.
 * @throws PackError when `dir` holds no `agent.toml`/`agent.json`, holds a link or special file
 *   that is not ignored, or cannot be read.
 */
export async function packDirectory(dir: string, out: string): Promise<PackResult> {
  const root = path.resolve(dir);
  const matcher = await readIgnore(root);
  let entries: string[];
  try {
    entries = await collect(root, matcher);
  } catch (error) {
    if (error instanceof PackError) throw error;
    throw new PackError(`cannot read ${root}: ${(error as Error).message}`);
  }
  if (!entries.includes("agent.toml") && !entries.includes("agent.json")) {
    throw new PackError(`${root} holds no agent.toml or agent.json`);
  }
  const folder = path.basename(root);
  await createTar(
    {
      gzip: true,
      file: out,
      cwd: path.dirname(root),
      portable: true,
      mtime: new Date(0),
      noDirRecurse: true,
    },
    [`${folder}/`, ...entries.map((entry) => `${folder}/${entry}`)],
  );
  return { entries };
}
