import type { ExitRecord } from "../core/agent-state.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import type { ProcessTree } from "../platform/process-tree.ts";
import type { AgentOwnership } from "./agent-ownership.ts";

/** A live agent process: spawned by us, or adopted after a daemon restart. */
export interface ProcessHandle {
  /** Process id; also the process group id (every agent leads its own group). */
  readonly pid: number;
  /** Start time from /proc (clock ticks since boot): with the pid, identifies the process. */
  readonly startTimeTicks: number | undefined;
  /** Resolves once, as soon as the process has exited (never rejects). */
  readonly exited: Promise<ExitRecord>;
  /**
   * Everything the agent started, also what left its process group (its cgroup, or the
   * processes carrying its token): stopped, measured and checked as a whole. Without it, the
   * process group alone.
   */
  readonly tree?: ProcessTree | undefined;
  /** The argv the process was started with (executable as run, then its arguments). */
  readonly commandLine?: readonly string[] | undefined;
}

/** Why a process could not be spawned; becomes the agent's FAILED reason. */
export type SpawnFailureReason = "EXECUTABLE_NOT_FOUND" | "PERMISSION_DENIED" | "SPAWN_FAILED";

/** Thrown by `RunnerPlatform.spawn` when no process could be started. */
export class SpawnFailure extends Error {
  override readonly name = "SpawnFailure";
  readonly reason: SpawnFailureReason;
  constructor(reason: SpawnFailureReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

export interface ProbeResult {
  readonly ok: boolean;
  /** For example "HTTP 200", "HTTP 503", "connection refused", "timed out after 500 ms". */
  readonly message: string;
}

/** The OS facilities a runner uses; bound to `src/platform/` by the composition root. */
export interface RunnerPlatform {
  /**
   * Spawns `argv` (never through a shell) as leader of a new process group; its output goes to
   * `logPath`, rotated at `logMaxBytes` keeping `logKeep` old files (by the output keeper).
   */
  spawn(options: {
    argv: readonly string[];
    cwd: string;
    env: Readonly<Record<string, string>>;
    logPath: string;
    /** The agent's name: names its output stream. */
    name: string;
    /** The agent's `log_max_bytes` (or the server's). */
    logMaxBytes: number;
    /** The agent's `log_keep` (or the server's). */
    logKeep: number;
  }): Promise<ProcessHandle>;
  /**
   * SIGTERM to the group (and to the members of `tree` outside it), SIGKILL after
   * `stopTimeoutMs`; resolves when the whole tree is gone (and its cgroup removed).
   */
  terminateGroup(
    pgid: number,
    options: {
      stopTimeoutMs: number;
      exited: Promise<unknown>;
      signal?: AbortSignal;
      tree?: ProcessTree | undefined;
    },
  ): Promise<{ killed: boolean }>;
  /**
   * One HTTP GET; 2xx is ok, unless `tree` is given and a process outside it holds the port's
   * listening socket (then not ok, and the message says who holds it).
   */
  probe(options: {
    host: string;
    port: number;
    path: string;
    timeoutMs: number;
    signal: AbortSignal;
    tree?: ProcessTree | undefined;
  }): Promise<ProbeResult>;
  /** Resident memory of the agent's processes, bytes: of `tree` when exact, else of the group. */
  groupResidentBytes(pgid: number, tree?: ProcessTree): number;
}

/** Port leases, keyed by agent name. */
export interface PortLeases {
  /** Lowest free port; throws DeployError NO_FREE_PORT. */
  lease(owner: string): Promise<number>;
  /** The agent's fixed port; throws DeployError PORT_UNAVAILABLE. */
  leaseFixed(owner: string, port: number): Promise<number>;
  /** Records a lease for a port an adopted process already holds. */
  reserve(owner: string, port: number): void;
  release(owner: string): void;
}

/** `max_agents` slots: reserved synchronously so concurrent starts cannot overshoot. */
export interface AgentSlots {
  /** Takes a slot for `owner` (idempotent); false when every slot is taken. */
  tryReserve(owner: string): boolean;
  release(owner: string): void;
  readonly limit: number;
}

/** Server-wide defaults an agent definition may override (SPEC §3). */
export interface AgentDefaults {
  readonly autoRestart: boolean;
  readonly maxRestarts: number;
  readonly healthCheckIntervalMs: number;
  /** Server `log_max_bytes`: size at which an agent's log is rotated, bytes. */
  readonly logMaxBytes: number;
  /** Server `log_keep`: rotated log files kept per agent. */
  readonly logKeep: number;
}

export interface RunnerDeps {
  readonly clock: Clock;
  readonly platform: RunnerPlatform;
  readonly ports: PortLeases;
  readonly slots: AgentSlots;
  readonly defaults: AgentDefaults;
  /** `{host}` of agents and the address they are probed on. */
  readonly host: string;
  /** Directory of `<name>.log` files. */
  readonly logDir: string;
  /** Maps argv[0] (for example the bundled `atoll-agent`) to the argv prefix that runs it. */
  readonly resolveCommand: (argv0: string) => readonly string[];
  /** Inherited environment of agent processes. */
  readonly baseEnv: Readonly<Record<string, string | undefined>>;
  /**
   * Proves which processes are this state dir's agents: every agent gets its token in its
   * environment (`ATOLL_SUPERVISOR_TOKEN`), by which the next daemon recognises it and its
   * descendants (see `restoreState`). None in tests that do not restore.
   */
  readonly ownership?: AgentOwnership | undefined;
  readonly logger: Logger;
  /** Aborted by a second shutdown signal: SIGKILL at once instead of waiting out the grace. */
  readonly forceStop?: AbortSignal;
  /** Period of probes while STARTING (default 100 ms). */
  readonly startProbeIntervalMs?: number;
}
