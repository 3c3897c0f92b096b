/**
 * One agent's life as data (docs/lifecycle.md): a tagged union of phases whose variants carry
 * exactly what is valid in them (the process and its generation, the port lease, the next
 * attempt, the old group still being reaped, who waits for what), plus the facts that outlive a
 * phase. Changed only by `reduce` (lifecycle-reducer.ts); nothing here performs I/O.
 *
 * `D` is the definition as the supervisor knows it (an `AgentDefinition`); the machine never
 * looks inside it: what it needs to decide is in {@link LifecycleSettings}.
 */
import type { AgentStateName, ExitRecord, HealthName, Lifecycle } from "./agent-state.ts";

/** The settings of a definition that lifecycle decisions read. Durations in milliseconds. */
export interface LifecycleSettings {
  /** `[deployment].port`: 0 = lease the next free port. */
  readonly fixedPort: number;
  readonly autoRestart: boolean;
  readonly maxRestarts: number;
  /** First backoff delay; 0 restarts at once (the budget still applies). */
  readonly restartDelayMs: number;
  /** Healthy uptime after which the restart count resets; 0 = at the first healthy probe. */
  readonly stableAfterMs: number;
  /** `""`: no HTTP probing, the process being alive is enough. */
  readonly healthPath: string;
  readonly healthCheckIntervalMs: number;
  readonly healthTimeoutMs: number;
  readonly failureThreshold: number;
  readonly startTimeoutMs: number;
  /** Grace between SIGTERM and SIGKILL; 0 = SIGKILL at once. */
  readonly stopTimeoutMs: number;
  /** Period of probes while STARTING. */
  readonly startProbeIntervalMs: number;
  readonly memoryLimitBytes: number | undefined;
}

/** A definition that cannot be used, as discovery reported it. */
export interface InvalidDefinition {
  readonly configPath: string;
  /** `<file>: <key path>: <problem>` (with the line for TOML syntax errors). */
  readonly message: string;
  readonly warnings: readonly string[];
}

export interface ValidDefinition<D> {
  readonly definition: D;
  readonly settings: LifecycleSettings;
}

/** A discovery result for one agent. */
export type DefinitionUpdate<D> =
  | ({ readonly kind: "valid" } & ValidDefinition<D>)
  | ({ readonly kind: "invalid" } & InvalidDefinition)
  | { readonly kind: "removed" };

/** The definitions an agent knows of. */
export interface DefinitionTrack<D> {
  /**
   * The one the current (or last, or next) process runs with: the latest valid one, taken at
   * each start. Undefined only while the agent was never valid.
   */
  readonly inEffect: ValidDefinition<D> | undefined;
  /** The last discovery result; it takes effect when the agent is not live, or at its next start. */
  readonly latest: DefinitionUpdate<D>;
}

/** A process of the agent: spawned by this daemon or adopted after a daemon restart. */
export interface AgentProcess {
  /** Unique per agent: events of an older process are recognised and dropped. */
  readonly generation: number;
  /** Also the process group id. */
  readonly pid: number;
  readonly startTimeTicks: number | undefined;
  /**
   * The argv it was started with (executable as run, then its arguments): recorded in the state
   * file, so that the next daemon adopts the process only if its command line still matches.
   */
  readonly command?: readonly string[] | undefined;
  readonly adopted: boolean;
}

/** Why a start is being made and who waits for its outcome. */
export interface StartIntent {
  /** Deploy or Restart: a failure before the first healthy probe is final (no retry). */
  readonly manual: boolean;
  /** An automatic restart out of BACKOFF: counts against the restart budget. */
  readonly restart: boolean;
  /** Callers told once the agent is RUNNING and healthy, or the start failed. */
  readonly waiters: readonly number[];
}

/** How a stop ends and what comes after it. */
export interface StopPlan {
  /** The STOPPING reason (STOP_REQUESTED, SERVER_SHUTDOWN, RESTART_REQUESTED, CRASH_LOOP...). */
  readonly reason: string;
  /**
   * `request`: STOPPED (KILLED_AFTER_GRACE when SIGKILL was needed); `decided`: the restart
   * policy's verdict, reached once the group is gone.
   */
  readonly end:
    | { readonly kind: "request" }
    | {
        readonly kind: "decided";
        readonly state: "STOPPED" | "FAILED";
        readonly reason: string;
        readonly message: string;
      };
  /** Undeploy and shutdown callers, told once stopped. */
  readonly stopWaiters: readonly number[];
  /** Callers of the start that ended in this stop: told its failure at the end. */
  readonly startWaiters: readonly number[];
  /** Start again once stopped, keeping port and slot (Restart; a Deploy during an Undeploy). */
  readonly next: StartIntent | undefined;
  /** Server shutdown: the desired state stays as it was, so the agent comes back next time. */
  readonly keepDesired: boolean;
}

/**
 * Operations that arrived while a start waited for its resources: run, in order, once it has
 * them (or was refused), so each sees the result of the one before (operations on one agent
 * are serialised, SPEC §4). The same shape as the operation events.
 */
export type QueuedOperation =
  | { readonly type: "deploy"; readonly waiter: number }
  | { readonly type: "restart"; readonly waiter: number }
  | { readonly type: "undeploy"; readonly waiter: number }
  | { readonly type: "shutdown"; readonly waiter: number };

export type IdleState = "DISCOVERED" | "STOPPED" | "FAILED";

/**
 * The phase of an agent. `acquiring` is the short wait for a `max_agents` slot, a port and the
 * spawn; it shows the state it started from (nothing runs yet).
 */
export type Phase =
  /** No process, no port, no slot. */
  | { readonly kind: "idle"; readonly shown: IdleState }
  /** The latest definition is unusable; no process, no port, no slot. */
  | { readonly kind: "invalid"; readonly problem: InvalidDefinition }
  | {
      readonly kind: "acquiring";
      readonly shown: IdleState | "BACKOFF";
      readonly intent: StartIntent;
      /** The port leased so far (0: none yet). */
      readonly port: number;
      /** `slot`: waiting for a max_agents slot; `lease`: for a port; `spawn`: for the process. */
      readonly step: "slot" | "lease" | "spawn";
      /** The generation the spawn will have (step `spawn`). */
      readonly generation: number;
      readonly queued: readonly QueuedOperation[];
    }
  | {
      readonly kind: "starting";
      readonly port: number;
      readonly process: AgentProcess;
      readonly intent: StartIntent;
      /** start_timeout ends here. */
      readonly deadlineMs: number;
    }
  | {
      readonly kind: "running";
      readonly port: number;
      readonly process: AgentProcess;
      /** Since when every probe passed; undefined after a failed one. */
      readonly healthySinceMs: number | undefined;
      readonly consecutiveFailures: number;
    }
  | {
      readonly kind: "backoff";
      /** Kept for the next start. */
      readonly port: number;
      readonly nextAttemptAtMs: number;
      /** The failed process's group while it is being terminated; the next start waits for it. */
      readonly reap: AgentProcess | undefined;
      /** The delay has passed (the start waits only for `reap`). */
      readonly due: boolean;
      /** Token of the backoff timer: the generation of the failed process. */
      readonly token: number;
      /** Deploys that joined the coming restart. */
      readonly waiters: readonly number[];
    }
  | {
      readonly kind: "stopping";
      /** Held until the whole group is gone. */
      readonly port: number;
      readonly group: AgentProcess;
      /** False once the leader has exited (members of its group may remain). */
      readonly leaderAlive: boolean;
      readonly plan: StopPlan;
    };

export type PhaseKind = Phase["kind"];

/** Everything the machine knows about one agent. */
export interface AgentMachine<D> {
  readonly name: string;
  readonly phase: Phase;
  /** The public state (always `publicState(phase)`), its reason, message and since when. */
  readonly label: Lifecycle;
  /** What clients asked for last; recorded only once a start was accepted (spawned). */
  readonly desired: "running" | "stopped";
  readonly definitions: DefinitionTrack<D>;
  /** Automatic restarts since the last reset. */
  readonly restartCount: number;
  readonly lastExit: ExitRecord | undefined;
  readonly health: HealthName;
  readonly healthMessage: string;
  readonly lastHealthCheckMs: number | undefined;
  readonly memoryBytes: number;
  /** When the current (or last) process started. */
  readonly startTimeMs: number | undefined;
  /** Generation of the next process. */
  readonly nextGeneration: number;
  /** Detached for a daemon upgrade: every later event is ignored. */
  readonly detached: boolean;
}

/** The public state a phase shows. */
export function publicState(phase: Phase): AgentStateName {
  switch (phase.kind) {
    case "idle":
    case "acquiring":
      return phase.shown;
    case "invalid":
      return "INVALID";
    case "starting":
      return "STARTING";
    case "running":
      return "RUNNING";
    case "backoff":
      return "BACKOFF";
    case "stopping":
      return "STOPPING";
  }
}

/** The port the agent holds a lease on (0: none). */
export function heldPort(phase: Phase): number {
  return phase.kind === "idle" || phase.kind === "invalid" ? 0 : phase.port;
}

/** The live leader of the agent's process group, if any. */
export function liveProcess(phase: Phase): AgentProcess | undefined {
  switch (phase.kind) {
    case "starting":
    case "running":
      return phase.process;
    case "stopping":
      return phase.leaderAlive ? phase.group : undefined;
    default:
      return undefined;
  }
}

/** True while the agent holds a `max_agents` slot (from the slot grant until stopped). */
export function holdsSlot(phase: Phase): boolean {
  switch (phase.kind) {
    case "idle":
    case "invalid":
      return false;
    case "acquiring":
      return phase.step !== "slot";
    default:
      return true;
  }
}

/** The settings the next start will use: the latest valid definition, else the one in effect. */
export function nextStartDefinition<D>(
  definitions: DefinitionTrack<D>,
): ValidDefinition<D> | undefined {
  return definitions.latest.kind === "valid" ? definitions.latest : definitions.inEffect;
}

/** A new agent, DISCOVERED or INVALID after its first discovery. */
export function initialMachine<D>(
  name: string,
  initial: DefinitionUpdate<D> & { readonly kind: "valid" | "invalid" },
  nowMs: number,
): AgentMachine<D> {
  const valid = initial.kind === "valid";
  return {
    name,
    phase: valid ? { kind: "idle", shown: "DISCOVERED" } : { kind: "invalid", problem: initial },
    label: valid
      ? { state: "DISCOVERED", reason: "", message: "", sinceMs: nowMs }
      : {
          state: "INVALID",
          reason: "AGENT_CONFIG_INVALID",
          message: initial.message,
          sinceMs: nowMs,
        },
    desired: "stopped",
    definitions: { inEffect: valid ? initial : undefined, latest: initial },
    restartCount: 0,
    lastExit: undefined,
    health: "UNKNOWN",
    healthMessage: "",
    lastHealthCheckMs: undefined,
    memoryBytes: 0,
    startTimeMs: undefined,
    nextGeneration: 1,
    detached: false,
  };
}
