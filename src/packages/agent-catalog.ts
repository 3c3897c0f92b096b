/**
 * Installed packages discovered beside the agents directory (SPEC §12): the packages directory
 * is scanned like an agents directory, with each link resolved to the version it names, each
 * definition given the facts of its package (`installedPackage`), and, for a package with a
 * virtual environment, its command and environment pointed at it. `AgentCatalog` keeps the
 * latest result of both directories and hands their merge (duplicates across them INVALID, as
 * within one) to the registry.
 */
import { access, mkdir } from "node:fs/promises";
import path from "node:path";
import type { AgentDefinition, DiscoveredAgent } from "../config/agent-definition.ts";
import { watchAgentsDirectory } from "../config/agents-watcher.ts";
import { type DiscoveryResult, discoverAgents, mergeDiscoveries } from "../config/discovery.ts";
import { type PackageLayout, readMeta } from "./package-layout.ts";

const EMPTY: DiscoveryResult = Object.freeze({
  agents: Object.freeze([]),
  warnings: Object.freeze([]),
});

/** Words of `[deployment].command[0]` that mean "the package's Python": its venv's interpreter. */
const PYTHON_COMMANDS: readonly string[] = ["python", "python3"];

/**
 * `def` run in its package's virtual environment: a command starting with `python` or
 * `python3` starts `.venv/bin/python` instead; `VIRTUAL_ENV` names the environment and its
 * `bin` comes first in `PATH` (so `pip`-installed console scripts, and a `python` the agent
 * itself spawns, resolve to it). `basePath` is the daemon's PATH, used unless the definition
 * sets its own.
 */
export function withVirtualEnv(
  def: AgentDefinition,
  basePath: string | undefined,
): AgentDefinition {
  const venv = path.join(def.dir, ".venv");
  const bin = path.join(venv, "bin");
  const [first, ...rest] = def.deployment.command;
  const command =
    first !== undefined && PYTHON_COMMANDS.includes(first)
      ? [path.join(bin, "python"), ...rest]
      : def.deployment.command;
  const inherited = def.deployment.env.PATH ?? basePath;
  const env = {
    ...def.deployment.env,
    VIRTUAL_ENV: venv,
    PATH: inherited === undefined || inherited === "" ? bin : `${bin}${path.delimiter}${inherited}`,
  };
  return Object.freeze({
    ...def,
    deployment: Object.freeze({
      ...def.deployment,
      command: Object.freeze([...command]),
      env: Object.freeze(env),
    }),
  });
}

/** Options of {@link discoverPackages}. */
export interface PackageDiscoveryOptions {
  /** The daemon's PATH, which a virtual environment's `bin` is put in front of. */
  readonly basePath?: string | undefined;
}

/**
 * Scans the packages directory once. A missing directory holds no packages. A version whose
 * facts file is missing (not installed by this server) is discovered without them.
 */
export async function discoverPackages(
  layout: PackageLayout,
  options: PackageDiscoveryOptions = {},
): Promise<DiscoveryResult> {
  let found: DiscoveryResult;
  try {
    found = await discoverAgents(layout.root, { resolveLinks: true });
  } catch (error) {
    if (await isMissing(layout.root)) return EMPTY;
    throw error;
  }
  const agents = await Promise.all(
    found.agents.map(async (agent): Promise<DiscoveredAgent> => {
      if (agent.kind !== "valid") return agent;
      const meta = await readMeta(layout, agent.definition.dir);
      if (meta === undefined) return agent;
      const { name: _name, ...installedPackage } = meta;
      let definition: AgentDefinition = Object.freeze({
        ...agent.definition,
        installedPackage: Object.freeze(installedPackage),
      });
      if (meta.provisioned.includes("venv"))
        definition = withVirtualEnv(definition, options.basePath);
      return Object.freeze({ kind: "valid", definition });
    }),
  );
  return Object.freeze({ agents: Object.freeze(agents), warnings: found.warnings });
}

async function isMissing(dir: string): Promise<boolean> {
  try {
    await access(dir);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT";
  }
}

export interface AgentCatalogOptions {
  readonly layout: PackageLayout;
  /** Receives the merged agents of both directories after every change (the registry). */
  readonly apply: (agents: readonly DiscoveredAgent[]) => void;
  readonly basePath?: string | undefined;
}

/**
 * The agents of the agents directory and of the installed packages, as one list for the
 * registry. Scans of the packages directory are numbered when they start; a result older than
 * the one applied last is dropped, so a slow scan that began before an install cannot bring
 * back the version it replaced.
 */
export class AgentCatalog {
  readonly #layout: PackageLayout;
  readonly #apply: (agents: readonly DiscoveredAgent[]) => void;
  readonly #basePath: string | undefined;
  #directory: DiscoveryResult = EMPTY;
  #packages: DiscoveryResult = EMPTY;
  #nextScan = 0;
  #appliedScan = -1;
  readonly #scanOf = new WeakMap<DiscoveryResult, number>();

  constructor(options: AgentCatalogOptions) {
    this.#layout = options.layout;
    this.#apply = options.apply;
    this.#basePath = options.basePath;
  }

  /** The latest result of the agents directory (its watcher calls this). */
  setDirectory(result: DiscoveryResult): void {
    this.#directory = result;
    this.#publish();
  }

  /** The config path of `name` in the agents directory, or undefined when it is not there. */
  directoryAgent(name: string): string | undefined {
    for (const agent of this.#directory.agents) {
      const agentName = agent.kind === "valid" ? agent.definition.name : agent.name;
      if (agentName === name) {
        return agent.kind === "valid" ? agent.definition.configPath : agent.configPath;
      }
    }
    return undefined;
  }

  /** Scans the packages directory now and applies the result. */
  async refreshPackages(): Promise<void> {
    this.#takePackages(await this.#scan());
  }

  /**
   * Watches the packages directory (created if missing) until `signal` aborts, applying every
   * change. Resolves once the first scan has been applied.
   */
  async watchPackages(signal: AbortSignal, onError: (error: unknown) => void): Promise<void> {
    await mkdir(this.#layout.root, { recursive: true });
    const first = await watchAgentsDirectory(
      this.#layout.root,
      (result) => this.#takePackages(result),
      {
        signal,
        initial: this.#packages,
        discover: () => this.#scan(),
        onError,
      },
    );
    this.#takePackages(first);
  }

  async #scan(): Promise<DiscoveryResult> {
    const ticket = this.#nextScan++;
    const result = await discoverPackages(this.#layout, { basePath: this.#basePath });
    this.#scanOf.set(result, ticket);
    return result;
  }

  #takePackages(result: DiscoveryResult): void {
    const ticket = this.#scanOf.get(result) ?? this.#nextScan++;
    if (ticket < this.#appliedScan) return;
    this.#appliedScan = ticket;
    this.#packages = result;
    this.#publish();
  }

  #publish(): void {
    this.#apply(mergeDiscoveries(this.#directory, this.#packages).agents);
  }
}
