/**
 * Finds the agents of an agents directory (SPEC §2): every direct, non-hidden subdirectory
 * holding `agent.toml` or `agent.json`, parsed and validated, sorted by directory name.
 */
import { constants, type Dirent, type Stats } from "node:fs";
import { lstat, open, readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { type DiscoveredAgent, discoveredName } from "./agent-definition.ts";
import { ConfigError } from "./config-error.ts";
import { escapeControlChars, osProblem } from "./config-values.ts";
import { parseAgentDefinition } from "./parse-definition.ts";

/** What one scan of the agents directory found. */
export interface DiscoveryResult {
  /** Sorted by directory name (code-unit order, independent of the locale). */
  readonly agents: readonly DiscoveredAgent[];
  /** Problems with the directory as a whole (not with one agent); empty normally. */
  readonly warnings: readonly string[];
}

/**
 * Definition files larger than this are refused (INVALID) rather than read: a definition is a
 * few kilobytes, and a stray multi-gigabyte file must not take the server's memory.
 */
export const MAX_DEFINITION_BYTES = 1024 * 1024;

/** Definition file names, in order of precedence. */
export const DEFINITION_FILE_NAMES = Object.freeze(["agent.toml", "agent.json"] as const);

/** Options of `discoverAgents`. */
export interface DiscoverOptions {
  /**
   * Give each agent the real path of its directory (symbolic links resolved) as `dir` and under
   * it its `configPath`, while its fallback name stays the entry's name. The packages directory
   * uses this: `<state_dir>/packages/<name>` is a link to the version being installed, and an
   * agent must keep running from the version it was started with when the link moves on.
   */
  readonly resolveLinks?: boolean;
}

/**
 * Scans `agentsDir` once.
 *
 * - Hidden entries (leading `.`), plain files, and directories without a definition are ignored.
 * - A symbolic link to a directory counts as an agent directory (so agents can live elsewhere
 *   and be linked in); a dangling link is ignored.
 * - `agent.toml` wins over `agent.json`; the agent then carries a warning naming the ignored file.
 * - An unreadable, oversized, unparseable or invalid definition gives an `invalid` entry with a
 *   message naming the file; the other agents are unaffected.
 * - Agents sharing a name are all turned `invalid`, each message naming the other files.
 *
 * @param agentsDir resolved to an absolute path against the process's working directory.
 * @throws ConfigError when `agentsDir` does not exist, is not a directory or cannot be listed.
 */
export async function discoverAgents(
  agentsDir: string,
  options: DiscoverOptions = {},
): Promise<DiscoveryResult> {
  const root = path.resolve(agentsDir);
  const dirNames = await listCandidateDirs(root);
  const resolveLinks = options.resolveLinks === true;
  const found = await Promise.all(dirNames.map((name) => scanAgentDir(root, name, resolveLinks)));
  const agents = markDuplicates(found.filter((agent) => agent !== undefined));
  return Object.freeze({ agents: Object.freeze(agents), warnings: Object.freeze([]) });
}

/**
 * Names of the entries of `root` that may be agent directories (non-hidden directories and
 * symbolic links, which are checked later), sorted in code-unit order.
 * @throws ConfigError when `root` does not exist, is not a directory or cannot be listed.
 */
export async function listCandidateDirs(root: string): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (error) {
    throw directoryError(root, error);
  }
  return entries
    .filter(
      (entry) => !entry.name.startsWith(".") && (entry.isDirectory() || entry.isSymbolicLink()),
    )
    .map((entry) => entry.name)
    .sort(compareCodeUnits);
}

async function scanAgentDir(
  root: string,
  dirName: string,
  resolveLinks: boolean,
): Promise<DiscoveredAgent | undefined> {
  const entry = path.join(root, dirName);
  // stat (not lstat) follows a symbolic link to the directory it names.
  const dirStat = await statOrMissing(entry);
  if (dirStat === "missing" || dirStat instanceof Error || !dirStat.isDirectory()) return undefined;
  let dir = entry;
  if (resolveLinks) {
    try {
      dir = await realpath(entry);
    } catch {
      // Moved or removed since the stat: the next scan sees what is there.
      return undefined;
    }
  }
  const tomlPath = path.join(dir, "agent.toml");
  const jsonPath = path.join(dir, "agent.json");
  const [toml, json] = await Promise.all([statOrMissing(tomlPath), statOrMissing(jsonPath)]);
  const warnings: string[] = [];
  let configPath: string;
  let fileStat: Stats | Error;
  if (toml !== "missing") {
    configPath = tomlPath;
    fileStat = toml;
    if (json !== "missing" && !(json instanceof Error)) {
      warnings.push(escapeControlChars(`${jsonPath} is ignored: agent.toml takes precedence`));
    }
  } else if (json !== "missing") {
    configPath = jsonPath;
    fileStat = json;
  } else {
    return undefined;
  }

  const invalid = (message: string): DiscoveredAgent =>
    Object.freeze({
      kind: "invalid",
      name: escapeControlChars(dirName),
      configPath,
      dir,
      message: escapeControlChars(`${configPath}: ${message}`),
      warnings: Object.freeze(warnings),
    });
  if (fileStat instanceof Error) return invalid(`cannot read: ${osProblem(fileStat)}`);
  if (!fileStat.isFile()) return invalid("is not a regular file");
  let text: string;
  try {
    const read = await readDefinitionFile(dir, configPath);
    if (typeof read !== "string") return invalid(read.refused);
    text = read;
  } catch (error) {
    return invalid(`cannot read: ${osProblem(error)}`);
  }
  const parsed = parseAgentDefinition(configPath, text, dirName);
  if (parsed.ok) {
    if (warnings.length === 0)
      return Object.freeze({ kind: "valid", definition: parsed.definition });
    const definition = Object.freeze({
      ...parsed.definition,
      warnings: Object.freeze([...warnings, ...parsed.definition.warnings]),
    });
    return Object.freeze({ kind: "valid", definition });
  }
  return Object.freeze({
    kind: "invalid",
    name: parsed.name,
    configPath,
    dir,
    message: parsed.message,
    warnings: Object.freeze([...warnings, ...parsed.warnings]),
  });
}

/**
 * The text of a definition file, or why it is refused. A definition that is a symbolic link is
 * followed only to a file inside its own agent folder: a link to anything else (the daemon's
 * token file, /etc/shadow) is refused without being read, since a supervisor often runs as root
 * and shows definition problems to every API client. The file is read through its resolved path
 * with O_NOFOLLOW, so swapping the link after the check cannot redirect the read, and its size is
 * checked on the open descriptor.
 */
async function readDefinitionFile(
  dir: string,
  configPath: string,
): Promise<string | { refused: string }> {
  let target = configPath;
  if ((await lstat(configPath)).isSymbolicLink()) {
    const [realDir, realFile] = await Promise.all([realpath(dir), realpath(configPath)]);
    const inside = path.relative(realDir, realFile);
    if (inside === "" || inside.startsWith("..") || path.isAbsolute(inside)) {
      return {
        refused:
          "is a symbolic link to a file outside its agent folder; refused (a definition may only link within its folder)",
      };
    }
    target = realFile;
  }
  const handle = await open(target, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) return { refused: "is not a regular file" };
    if (stats.size > MAX_DEFINITION_BYTES) {
      return { refused: `is larger than ${MAX_DEFINITION_BYTES} bytes (${stats.size})` };
    }
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}

/**
 * The agents of several discovery results as one (the agents directory and the installed
 * packages): sorted by name, every name shared between or within them invalid, as within one
 * directory; warnings of all kept.
 */
export function mergeDiscoveries(...results: readonly DiscoveryResult[]): DiscoveryResult {
  const agents = results
    .flatMap((result) => result.agents)
    .sort((a, b) => compareCodeUnits(discoveredName(a), discoveredName(b)));
  return Object.freeze({
    agents: Object.freeze(markDuplicates(agents)),
    warnings: Object.freeze(results.flatMap((result) => result.warnings)),
  });
}

/** Every agent whose name is shared with another becomes invalid, naming the other files. */
function markDuplicates(agents: readonly DiscoveredAgent[]): DiscoveredAgent[] {
  const byName = new Map<string, DiscoveredAgent[]>();
  for (const agent of agents) {
    const name = discoveredName(agent);
    byName.set(name, [...(byName.get(name) ?? []), agent]);
  }
  return agents.map((agent) => {
    const name = discoveredName(agent);
    const same = byName.get(name) ?? [];
    if (same.length < 2) return agent;
    const configPath = configPathOf(agent);
    const others = same.filter((other) => other !== agent).map(configPathOf);
    const duplicate = `agent.name: duplicate agent name ${JSON.stringify(name)}, also defined by ${others.join(", ")}`;
    // An agent already invalid for another reason keeps that reason too.
    const message = escapeControlChars(
      agent.kind === "invalid" ? `${agent.message}; ${duplicate}` : `${configPath}: ${duplicate}`,
    );
    return Object.freeze({
      kind: "invalid",
      name,
      configPath,
      dir: agent.kind === "valid" ? agent.definition.dir : agent.dir,
      message,
      warnings: agent.kind === "valid" ? agent.definition.warnings : agent.warnings,
    });
  });
}

function configPathOf(agent: DiscoveredAgent): string {
  return agent.kind === "valid" ? agent.definition.configPath : agent.configPath;
}

/** Stats of `file`; "missing" when it does not exist; the error when it cannot be examined. */
async function statOrMissing(file: string): Promise<Stats | Error | "missing"> {
  try {
    return await stat(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // ENOTDIR: a path component is a file; ELOOP: a symlink loop. Neither holds a definition.
    if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP") return "missing";
    return error as Error;
  }
}

function directoryError(root: string, error: unknown): ConfigError {
  const code = (error as NodeJS.ErrnoException).code;
  const shown = escapeControlChars(root);
  const message =
    code === "ENOENT"
      ? `agents directory ${shown} does not exist`
      : code === "ENOTDIR"
        ? `agents directory ${shown} is not a directory`
        : `agents directory ${shown} cannot be read: ${osProblem(error)}`;
  return new ConfigError(message, { file: root }, { cause: error });
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
