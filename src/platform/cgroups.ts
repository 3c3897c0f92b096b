/**
 * Control groups as the containment of an agent's whole process tree (docs/platform.md,
 * "Containment"): every process an agent starts is born into the agent's cgroup, whatever it
 * does with sessions and process groups (`setsid`), so membership is exact and the whole tree
 * can be ended at once (`cgroup.kill` on cgroup v2). Detection, one cgroup per agent process, and
 * the trampoline that puts the agent into it before it can fork.
 *
 * Layout: `<hierarchy mount><the daemon's own cgroup>/<base>/agent-<name>/<spawn id>/`, where
 * `<base>` (`atoll-deploy-<id>`) is derived from the state dir's secret. Only a process of the
 * daemon's user (or root) can move a process into it, and a child is born in its parent's cgroup,
 * so its members are the agent's descendants. No controller is enabled: the cgroups are used for
 * membership and killing only.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import {
  type CgroupHierarchy,
  type CgroupVersion,
  ownCgroupPath,
  parseCgroupMounts,
} from "./cgroup-hierarchy.ts";

export type { CgroupHierarchy, CgroupVersion } from "./cgroup-hierarchy.ts";

/** v1 hierarchies the daemon may use, in order: any hierarchy works for membership and kill. */
const V1_CONTROLLERS = ["pids", "freezer"] as const;

/**
 * The shell trampoline that puts the agent into its cgroup before it runs (Node has no
 * CLONE_INTO_CGROUP and no pre-exec hook): it writes its own pid into `cgroup.procs` and execs
 * the agent's argv, passed as positional parameters, never interpolated into the script.
 * Exit 125 when the cgroup cannot be joined.
 */
const TRAMPOLINE_SCRIPT = 'echo $$ > "$1/cgroup.procs" || exit 125; shift; exec "$@"';

/** The shell that runs the trampoline. */
export const TRAMPOLINE_SHELL = "/bin/sh";

/** One cgroup holding one agent process and everything it starts. */
export class AgentCgroup {
  readonly agent: string;
  /** Absolute path of the cgroup directory. */
  readonly dir: string;
  readonly version: CgroupVersion;
  readonly #owner: Cgroups;

  constructor(owner: Cgroups, agent: string, dir: string) {
    this.#owner = owner;
    this.agent = agent;
    this.dir = dir;
    this.version = owner.version;
  }

  /** The argv prefix that starts a program inside this cgroup (before it can fork). */
  trampoline(): readonly string[] {
    return [TRAMPOLINE_SHELL, "-c", TRAMPOLINE_SCRIPT, "atoll-cgroup", this.dir];
  }

  /** Pids of the live members (zombies are not members; a removed cgroup has none). */
  pids(): number[] {
    let text: string;
    try {
      text = readFileSync(path.join(this.dir, "cgroup.procs"), "utf8");
    } catch {
      return []; // removed
    }
    const pids: number[] = [];
    for (const line of text.split("\n")) {
      const pid = Number(line);
      if (line !== "" && Number.isSafeInteger(pid) && pid > 0) pids.push(pid);
    }
    return pids;
  }

  /** True while a live process is in the cgroup. */
  populated(): boolean {
    return this.pids().length > 0;
  }

  /**
   * SIGKILL to every member: at once with v2's `cgroup.kill` (which also catches a process forking
   * meanwhile); else to each member by pid, a few rounds to catch what forked in between.
   */
  kill(): void {
    if (this.version === 2) {
      try {
        writeFileSync(path.join(this.dir, "cgroup.kill"), "1");
        return;
      } catch {
        // No cgroup.kill before Linux 5.14: by pid below.
      }
    }
    for (let round = 0; round < 5; round++) {
      const pids = this.pids();
      if (pids.length === 0) return;
      for (const pid of pids) signalPid(pid, "SIGKILL");
    }
  }

  /**
   * Sends `signal` to every member by pid. A member that exits between the read and the signal
   * frees its pid, which the kernel does not hand out again at once (pids are allocated upwards).
   */
  signal(signal: NodeJS.Signals): void {
    for (const pid of this.pids()) signalPid(pid, signal);
  }

  /** Removes the cgroup (and its agent directory when that is empty too); false while busy. */
  remove(): boolean {
    const removed = removeDir(this.dir);
    if (removed) removeDir(path.dirname(this.dir));
    else this.#owner.retryLater(this.dir);
    return removed;
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Gone meanwhile.
  }
}

/** rmdir; true when it is gone (or was). EBUSY (members, or a v1 zombie), ENOTEMPTY: false. */
function removeDir(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT";
  }
}

/** Options of {@link Cgroups.open}. */
export interface CgroupsOptions {
  /** Name of the base directory (`atoll-deploy-<id>`, from the state dir's secret). */
  readonly baseName: string;
  /**
   * The base a previous daemon of this state dir recorded: used when it is still a directory of
   * that name in a cgroup hierarchy (the daemon may now run in another cgroup), else ignored.
   */
  readonly recordedBase?: string | undefined;
  /** Versions to try, in order. Default `[2, 1]`; `[]` turns cgroups off. */
  readonly versions?: readonly CgroupVersion[];
  /** `/proc/self/mountinfo` and `/proc/self/cgroup` texts (tests); read from /proc by default. */
  readonly mountinfo?: string;
  readonly selfCgroup?: string;
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return fallback;
  }
}

function isDirectory(dir: string): boolean {
  return lstatSync(dir, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/** True when `candidate` is `root` or inside it (both normalised, absolute). */
function inside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}

/** Characters safe in one spawn id: base-36 time and random hex. */
function spawnId(): string {
  return `${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
}

/** The cgroups of one daemon's agents: a base directory in one writable hierarchy. */
export class Cgroups {
  readonly version: CgroupVersion;
  readonly hierarchy: CgroupHierarchy;
  /** Absolute path of the base directory. */
  readonly base: string;
  /** Cgroups whose removal failed (busy): tried again at the next removal and at close. */
  readonly #pending = new Set<string>();

  private constructor(hierarchy: CgroupHierarchy, base: string) {
    this.hierarchy = hierarchy;
    this.version = hierarchy.version;
    this.base = base;
  }

  /**
   * Finds a writable hierarchy (v2, unified or pure, first; then a v1 `pids` or `freezer`
   * hierarchy) and makes the base directory in it, under the daemon's own cgroup (so that,
   * under systemd, the agents stay inside the service's unit), or uses the recorded base of the
   * previous run. Undefined when no hierarchy is mounted or none can be written: the daemon then
   * finds the members of an agent's tree through /proc instead.
   */
  static open(options: CgroupsOptions): Cgroups | undefined {
    if (!/^[A-Za-z0-9_.-]+$/.test(options.baseName)) {
      throw new RangeError(`not a cgroup name: ${options.baseName}`);
    }
    const versions = options.versions ?? [2, 1];
    const hierarchies = parseCgroupMounts(
      options.mountinfo ?? readOr("/proc/self/mountinfo", ""),
    ).filter((h) => versions.includes(h.version));
    const recorded = options.recordedBase;
    if (recorded !== undefined && path.isAbsolute(recorded)) {
      const normal = path.normalize(recorded);
      const hierarchy = hierarchies.find((h) => inside(h.mountPoint, path.dirname(normal)));
      if (
        hierarchy !== undefined &&
        normal === recorded &&
        path.basename(normal) === options.baseName &&
        isDirectory(normal) &&
        usable(hierarchy) &&
        canJoin(normal)
      ) {
        return new Cgroups(hierarchy, normal);
      }
    }
    const selfCgroup = options.selfCgroup ?? readOr("/proc/self/cgroup", "");
    for (const version of versions) {
      const candidates = hierarchies.filter((h) => h.version === version);
      const ordered =
        version === 2
          ? candidates
          : V1_CONTROLLERS.flatMap((c) => candidates.filter((h) => h.controllers.includes(c)));
      for (const hierarchy of ordered) {
        const own = ownCgroupPath(hierarchy, selfCgroup);
        if (own === undefined || !usable(hierarchy)) continue;
        const base = path.join(hierarchy.mountPoint, own, options.baseName);
        let made = false;
        try {
          mkdirSync(base);
          made = true;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EEXIST" || !isDirectory(base)) continue;
        }
        if (canJoin(base)) return new Cgroups(hierarchy, base);
        if (made) removeDir(base);
      }
    }
    return undefined;
  }

  /** "cgroup v2 at /sys/fs/cgroup/unified/atoll-deploy-…", for the daemon's log. */
  describe(): string {
    const via = this.version === 1 ? ` (${this.hierarchy.controllers.join(",")} hierarchy)` : "";
    return `cgroup v${this.version}${via} at ${this.base}`;
  }

  /**
   * Makes a new, empty cgroup for the next process of `agent`.
   * @throws the fs error when it cannot be made.
   */
  create(agent: string): AgentCgroup {
    const agentDir = path.join(this.base, `agent-${agent}`);
    // The base may have been removed by hand (or by an earlier daemon's close): made again.
    mkdirSync(agentDir, { recursive: true });
    for (;;) {
      const dir = path.join(agentDir, spawnId());
      try {
        mkdirSync(dir);
        return new AgentCgroup(this, agent, dir);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
    }
  }

  /**
   * The cgroup under this base that process `pid` is in (`/proc/<pid>/cgroup`), with the agent it
   * belongs to; undefined when it is in none of them.
   */
  cgroupOf(pid: number): AgentCgroup | undefined {
    const own = ownCgroupPath(this.hierarchy, readOr(`/proc/${pid}/cgroup`, ""));
    if (own === undefined) return undefined;
    const dir = path.join(this.hierarchy.mountPoint, own);
    const relative = path.relative(this.base, dir).split(path.sep);
    const [agentDir, id] = relative;
    if (relative.length !== 2 || agentDir === undefined || id === undefined) return undefined;
    if (!agentDir.startsWith("agent-") || agentDir === "agent-") return undefined;
    return new AgentCgroup(this, agentDir.slice("agent-".length), dir);
  }

  /** Every agent cgroup under the base (left by this daemon or an earlier one). */
  list(): AgentCgroup[] {
    const found: AgentCgroup[] = [];
    for (const agentDir of subdirectories(this.base)) {
      if (!agentDir.startsWith("agent-") || agentDir === "agent-") continue;
      const agent = agentDir.slice("agent-".length);
      for (const id of subdirectories(path.join(this.base, agentDir))) {
        found.push(new AgentCgroup(this, agent, path.join(this.base, agentDir, id)));
      }
    }
    return found;
  }

  /** Notes a cgroup that could not be removed yet (a v1 member still a zombie). */
  retryLater(dir: string): void {
    this.#pending.add(dir);
  }

  /** Removes what could not be removed before, when it is empty now. */
  sweep(): void {
    for (const dir of this.#pending) {
      if (removeDir(dir)) {
        this.#pending.delete(dir);
        removeDir(path.dirname(dir));
      }
    }
  }

  /**
   * At a shutdown: removes every empty cgroup under the base, and the base itself when nothing
   * is left in it. Cgroups that still hold processes (an agent left running) stay.
   * @returns true when the base is gone.
   */
  close(): boolean {
    this.sweep();
    for (const agentDir of subdirectories(this.base)) {
      const dir = path.join(this.base, agentDir);
      for (const id of subdirectories(dir)) removeDir(path.join(dir, id));
      removeDir(dir);
    }
    return removeDir(this.base);
  }
}

/** Names of the subdirectories of `dir` (the child cgroups); empty when it is gone. */
function subdirectories(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
  } catch {
    return [];
  }
}

/**
 * True when a process can be moved into a new cgroup under `base`: a mkdir can succeed where a
 * move cannot (cgroup v2 also needs write access to the common ancestor's `cgroup.procs`), and
 * every agent start would then fail in its trampoline. Tried once at open with the trampoline
 * itself (a few milliseconds, one RCU grace period of the kernel's cgroup move).
 */
function canJoin(base: string): boolean {
  const probe = path.join(base, `probe-${spawnId()}`);
  try {
    mkdirSync(probe);
  } catch {
    return false;
  }
  try {
    const result = spawnSync(
      TRAMPOLINE_SHELL,
      ["-c", TRAMPOLINE_SCRIPT, "atoll-cgroup", probe, TRAMPOLINE_SHELL, "-c", "exit 0"],
      { stdio: "ignore", timeout: 5_000 },
    );
    return result.status === 0;
  } finally {
    removeDir(probe);
  }
}

/** True when the hierarchy's mount is there and the trampoline's shell exists. */
function usable(hierarchy: CgroupHierarchy): boolean {
  try {
    return statSync(hierarchy.mountPoint).isDirectory() && statSync(TRAMPOLINE_SHELL).isFile();
  } catch {
    return false;
  }
}
