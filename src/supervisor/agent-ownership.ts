/**
 * Which processes are this state dir's agents, proven (docs/operations.md, "Which processes are
 * ours"): a process is ours only when it runs as the daemon's user (real and effective uid) and
 * carries, in the environment it was started with, the token of its agent: an HMAC of the agent's
 * name under a random secret kept in the 0600 state file. The state dir's path, which anyone can
 * copy into an environment, proves nothing. For a recorded pid, its start time and command line
 * must match the record as well (`daemon-state.ts`).
 *
 * The token is inherited by everything the agent starts, so it also finds the descendants that
 * left the agent's process group where no cgroup holds them. It never appears in logs or status.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import {
  listPids,
  type ProcStat,
  readProcessCommandLine,
  readProcessEnvironment,
  readProcessUids,
  readProcStat,
} from "../platform/proc-info.ts";
import type { TreeMarker } from "../platform/process-tree.ts";

/** The variable carrying an agent's token (beyond SPEC §2's variables). */
export const SUPERVISOR_TOKEN_ENV = "ATOLL_SUPERVISOR_TOKEN";

/**
 * The variable daemons before issue 13 marked their agents with (their state dir's path). It
 * proves nothing; a process carrying it is only reported, never adopted or signalled.
 */
export const LEGACY_MARKER_ENV = "ATOLL_SUPERVISOR_STATE_DIR";

/** The variable naming the agent (SPEC §2). */
const AGENT_NAME_ENV = "ATOLL_AGENT_NAME";

/** A new secret: 32 random bytes, base64url. */
export function newSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** True for text that can be a secret this module made (or an operator wrote: 32+ characters). */
export function isUsableSecret(value: unknown): value is string {
  return typeof value === "string" && /^[A-Za-z0-9_-]{32,}$/.test(value);
}

/** A live process proven ours, with what a restore compares. */
export interface ProvenProcess {
  readonly agent: string;
  readonly stat: ProcStat;
  readonly commandLine: readonly string[];
  readonly env: ReadonlyMap<string, string>;
}

/** A process that claims to be an agent of this state dir but cannot be proven so. */
export interface UnprovenClaim {
  readonly pid: number;
  readonly uid: number | undefined;
  readonly agent: string | undefined;
  /** Why it is not ours: "runs as another user", or it has only an earlier daemon's marker. */
  readonly why: string;
}

/** What one scan of /proc found. */
export interface Survey {
  /** Live processes proven ours, by agent name. */
  readonly proven: ReadonlyMap<string, readonly ProvenProcess[]>;
  readonly unproven: readonly UnprovenClaim[];
}

export interface AgentOwnershipOptions {
  /** The daemon's user id (default: this process's). */
  readonly uid?: number;
  /** The absolute state dir: a process with the old marker for it is reported (upgrades). */
  readonly stateDir?: string;
}

export class AgentOwnership {
  readonly uid: number;
  readonly #secret: string;
  readonly #stateDir: string | undefined;
  readonly #tokens = new Map<string, string>();

  constructor(secret: string, options: AgentOwnershipOptions = {}) {
    if (!isUsableSecret(secret)) throw new RangeError("the ownership secret is too short");
    this.#secret = secret;
    this.uid = options.uid ?? process.getuid?.() ?? 0;
    this.#stateDir = options.stateDir;
  }

  /** The secret, for the state file only. */
  get secret(): string {
    return this.#secret;
  }

  /** The token agent `name`'s processes carry in {@link SUPERVISOR_TOKEN_ENV}. */
  tokenFor(name: string): string {
    let token = this.#tokens.get(name);
    if (token === undefined) {
      token = createHmac("sha256", this.#secret).update(`agent\0${name}`).digest("base64url");
      this.#tokens.set(name, token);
    }
    return token;
  }

  /** The environment entry (and user) every process of agent `name` carries: its tree's marker. */
  markerOf(name: string): TreeMarker {
    return { key: SUPERVISOR_TOKEN_ENV, value: this.tokenFor(name), uid: this.uid };
  }

  /** Name of the state dir's cgroup base directory: not guessable without the secret. */
  get cgroupBaseName(): string {
    const id = createHmac("sha256", this.#secret).update("cgroup").digest("hex").slice(0, 16);
    return `atoll-deploy-${id}`;
  }

  /**
   * The agent whose token `token` is, among `candidates`; undefined when none (compared in
   * constant time).
   */
  #agentOf(token: string, candidates: Iterable<string>): string | undefined {
    const given = Buffer.from(token);
    for (const name of candidates) {
      const expected = Buffer.from(this.tokenFor(name));
      if (expected.length === given.length && timingSafeEqual(expected, given)) return name;
    }
    return undefined;
  }

  /** True when `pid` runs as the daemon's user, real and effective uid. */
  #runsAsUs(pid: number): boolean {
    const uids = readProcessUids(pid);
    return uids !== undefined && uids.real === this.uid && uids.effective === this.uid;
  }

  /** True when `pid` is a live process of agent `name`: the daemon's user and the agent's token. */
  proves(pid: number, name: string): boolean {
    const token = readProcessEnvironment(pid)?.get(SUPERVISOR_TOKEN_ENV);
    return token !== undefined && this.#agentOf(token, [name]) === name && this.#runsAsUs(pid);
  }

  /**
   * One scan of /proc: every live process proven ours, by agent (its token is the token of one of
   * `names`, or of the agent its `ATOLL_AGENT_NAME` says, and it runs as the daemon's user), and
   * the processes that claim to be agents of this state dir (a token, or the old marker with
   * this state dir) without proof, which a restore reports and leaves alone.
   */
  survey(names: Iterable<string>): Survey {
    const known = new Set(names);
    const proven = new Map<string, ProvenProcess[]>();
    const unproven: UnprovenClaim[] = [];
    for (const pid of listPids()) {
      if (pid === process.pid) continue;
      const env = readProcessEnvironment(pid);
      if (env === undefined) continue;
      const token = env.get(SUPERVISOR_TOKEN_ENV);
      const legacy = this.#stateDir !== undefined && env.get(LEGACY_MARKER_ENV) === this.#stateDir;
      if (token === undefined && !legacy) continue;
      const stat = readProcStat(pid);
      if (stat === undefined || stat.state === "Z" || stat.state === "X") continue;
      const named = env.get(AGENT_NAME_ENV);
      const candidates = named === undefined ? known : [...known, named];
      const agent = token === undefined ? undefined : this.#agentOf(token, candidates);
      // Another state dir's agent (its token is of another secret): none of our business.
      if (token !== undefined && agent === undefined && !legacy) continue;
      const why =
        agent === undefined
          ? "an earlier daemon's marker (the state dir's path), without this state dir's token"
          : this.#runsAsUs(pid)
            ? undefined
            : "runs as another user";
      if (why !== undefined || agent === undefined) {
        unproven.push({ pid, uid: readProcessUids(pid)?.real, agent: named, why: why ?? "" });
        continue;
      }
      const found: ProvenProcess = {
        agent,
        stat,
        commandLine: readProcessCommandLine(pid) ?? [],
        env,
      };
      proven.set(agent, [...(proven.get(agent) ?? []), found]);
    }
    return { proven, unproven };
  }
}
