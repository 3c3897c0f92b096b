/**
 * What goes into the lifecycle reducer (events: requests, and the results of effects) and what
 * comes out of it (effects for the runner to perform). Plain data, so a sequence of events can
 * be replayed in a unit test with a manual clock (docs/lifecycle.md).
 */
import type { AgentStateName, ExitRecord, HealthName } from "./agent-state.ts";
import type { DeployErrorCode } from "./errors.ts";
import type { DefinitionUpdate } from "./lifecycle-model.ts";

/** An expected failure to report to a waiting caller (becomes a `DeployError`). */
export interface Failure {
  readonly code: DeployErrorCode;
  readonly message: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Timers the machine arms; each fires with the token it was armed with. */
export type TimerName = "startProbe" | "startDeadline" | "liveness" | "backoff";

/** The operations a client or the server asks for; `waiter` identifies who waits for the answer. */
export type OperationEvent =
  | { readonly type: "deploy"; readonly waiter: number }
  | { readonly type: "restart"; readonly waiter: number }
  | { readonly type: "undeploy"; readonly waiter: number }
  /** Like undeploy, for a server shutdown: the desired state is kept. */
  | { readonly type: "shutdown"; readonly waiter: number };

export type LifecycleEvent<D> =
  | OperationEvent
  /** Stop supervising, leave the process running for the next daemon (upgrade). */
  | { readonly type: "detach" }
  /** Start as an automatic start: `autostart = true`, or deployed when the last daemon stopped. */
  | { readonly type: "autostart" }
  /** A live process that survived a daemon restart, whose port was reserved for it. */
  | {
      readonly type: "adopt";
      readonly pid: number;
      readonly startTimeTicks: number | undefined;
      /** The argv it runs, as recorded when it was spawned (see `AgentProcess.command`). */
      readonly command?: readonly string[] | undefined;
      readonly port: number;
      readonly startTimeMs: number | undefined;
    }
  | { readonly type: "slotReserved" }
  | { readonly type: "slotRefused"; readonly failure: Failure }
  | { readonly type: "leaseGranted"; readonly port: number }
  | { readonly type: "leaseRefused"; readonly failure: Failure }
  | {
      readonly type: "spawned";
      readonly generation: number;
      readonly pid: number;
      readonly startTimeTicks: number | undefined;
      /** The argv it was started with (see `AgentProcess.command`). */
      readonly command?: readonly string[] | undefined;
    }
  | {
      readonly type: "spawnFailed";
      readonly generation: number;
      /** EXECUTABLE_NOT_FOUND, PERMISSION_DENIED, SPAWN_FAILED. */
      readonly reason: string;
      readonly message: string;
    }
  | {
      readonly type: "probed";
      readonly generation: number;
      readonly ok: boolean;
      readonly message: string;
    }
  /** Resident memory of the group; undefined when it could not be measured. */
  | {
      readonly type: "memorySampled";
      readonly generation: number;
      readonly bytes: number | undefined;
    }
  | { readonly type: "exited"; readonly generation: number; readonly exit: ExitRecord }
  | { readonly type: "timerFired"; readonly timer: TimerName; readonly token: number }
  /** Every member of the group is gone; `killed` when SIGKILL was needed. */
  | { readonly type: "groupGone"; readonly generation: number; readonly killed: boolean }
  /** Terminating the group failed (it may still run): a supervisor error. */
  | { readonly type: "groupStopFailed"; readonly generation: number; readonly message: string }
  | { readonly type: "definitionChanged"; readonly update: DefinitionUpdate<D> }
  /** A background task of the runner failed unexpectedly (already logged with its cause). */
  | { readonly type: "internalError"; readonly message: string };

/** What a settled waiter gets. */
export type Outcome =
  | { readonly ok: true; readonly killed: boolean }
  | { readonly ok: false; readonly failure: Failure };

export type Effect<D> =
  /** Take a `max_agents` slot; answered at once with slotReserved or slotRefused. */
  | { readonly type: "reserveSlot" }
  | { readonly type: "releaseSlot" }
  /** Lease `fixedPort` (moving any lease held), or with 0 the lowest free port (or the one held). */
  | { readonly type: "leasePort"; readonly fixedPort: number }
  | { readonly type: "releasePort" }
  | {
      readonly type: "spawn";
      readonly generation: number;
      readonly port: number;
      readonly definition: D;
    }
  /**
   * End the group: SIGTERM, `stopTimeoutMs` of grace (0: SIGKILL at once), SIGKILL; answered by
   * groupGone. `leaderExited`: only what the dead leader left in its group remains.
   */
  | {
      readonly type: "terminateGroup";
      readonly generation: number;
      readonly pid: number;
      readonly stopTimeoutMs: number;
      readonly leaderExited: boolean;
    }
  | {
      readonly type: "probe";
      readonly generation: number;
      readonly port: number;
      readonly path: string;
      readonly timeoutMs: number;
    }
  /** Answered at once with memorySampled. */
  | { readonly type: "sampleMemory"; readonly generation: number; readonly pid: number }
  | {
      readonly type: "armTimer";
      readonly timer: TimerName;
      readonly delayMs: number;
      readonly token: number;
    }
  | { readonly type: "cancelTimer"; readonly timer: TimerName }
  /** Stop watching a process (probes, exit) without touching it: detach. */
  | { readonly type: "forgetProcess"; readonly generation: number }
  | { readonly type: "settle"; readonly waiters: readonly number[]; readonly outcome: Outcome }
  /** Run an operation again now that the start it waited for has its resources (or not). */
  | { readonly type: "requeue"; readonly operation: OperationEvent }
  | {
      readonly type: "log";
      readonly level: "info" | "warn" | "error";
      readonly message: string;
      readonly fields: Readonly<Record<string, unknown>>;
    }
  /** The durable facts (desired state, port, pid, start time) changed: save them. */
  | { readonly type: "persist" }
  /** The observable state changed: publish one change with what it was before. */
  | {
      readonly type: "publish";
      readonly previousState: AgentStateName;
      readonly previousHealth: HealthName;
    };
