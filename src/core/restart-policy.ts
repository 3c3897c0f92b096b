/**
 * What to do when an agent's process ends or is found unhealthy: a pure
 * function of the facts, unit-tested with plain numbers (docs/lifecycle.md).
 */

/** Longest backoff between two automatic starts. */
export const MAX_BACKOFF_MS = 30_000;

export type FailureCause =
  /** The process exited (code set) or died by a signal (signal set). */
  | { readonly kind: "exit"; readonly code: number | null; readonly signal: string | null }
  /** `failure_threshold` consecutive liveness probes failed. */
  | { readonly kind: "unhealthy" }
  /** The process group's resident memory exceeded `memory_limit`. */
  | { readonly kind: "memory" }
  /** The first healthy probe did not come within `start_timeout`. */
  | { readonly kind: "start-timeout" };

export interface RestartPolicyInput {
  readonly cause: FailureCause;
  /** True while the process had not yet passed its first probe. */
  readonly duringStart: boolean;
  /** True when the current start was asked for by a client (Deploy, Restart). */
  readonly manualStart: boolean;
  readonly autoRestart: boolean;
  /** Automatic restarts already made since the last reset. */
  readonly restartCount: number;
  readonly maxRestarts: number;
  /** First backoff delay, ms. */
  readonly restartDelayMs: number;
}

export type RestartDecision =
  | { readonly action: "stopped"; readonly reason: "EXITED"; readonly message: string }
  | { readonly action: "failed"; readonly reason: string; readonly message: string }
  | {
      readonly action: "restart";
      readonly reason: string;
      readonly message: string;
      readonly delayMs: number;
    }
  /** Unhealthy without auto_restart: keep the process, only report it. */
  | { readonly action: "keep"; readonly reason: string; readonly message: string };

/** Backoff before automatic restart number `restartCount + 1`: delay × 2^count, capped at 30 s. */
export function backoffDelayMs(restartDelayMs: number, restartCount: number): number {
  const factor = 2 ** Math.min(restartCount, 30);
  return Math.min(restartDelayMs * factor, MAX_BACKOFF_MS);
}

/** The reason and message that describe a failure cause. */
export function describeCause(cause: FailureCause): { reason: string; message: string } {
  switch (cause.kind) {
    case "exit":
      return cause.signal !== null
        ? { reason: "SIGNALED", message: `process killed by ${cause.signal}` }
        : { reason: "EXITED", message: `process exited with code ${cause.code ?? "unknown"}` };
    case "unhealthy":
      return { reason: "HEALTH_CHECK_FAILED", message: "liveness probes failed" };
    case "memory":
      return { reason: "MEMORY_LIMIT_EXCEEDED", message: "resident memory above memory_limit" };
    case "start-timeout":
      return { reason: "START_TIMEOUT", message: "not healthy within start_timeout" };
  }
}

/** Decides what happens after a failure; see docs/lifecycle.md "Restart policy". */
export function decideAfterFailure(input: RestartPolicyInput): RestartDecision {
  const { cause } = input;
  if (cause.kind === "exit" && cause.code === 0) {
    return { action: "stopped", reason: "EXITED", message: "process exited with code 0" };
  }
  const described = describeCause(cause);
  if (input.duringStart && input.manualStart) {
    const reason = cause.kind === "start-timeout" ? "START_TIMEOUT" : "EXITED_DURING_START";
    return { action: "failed", reason, message: `start failed: ${described.message}` };
  }
  if (!input.autoRestart) {
    return cause.kind === "unhealthy"
      ? { action: "keep", ...described }
      : { action: "failed", ...described };
  }
  if (input.restartCount >= input.maxRestarts) {
    return {
      action: "failed",
      reason: "CRASH_LOOP",
      message: `${described.message}; gave up after ${input.restartCount} restarts`,
    };
  }
  return {
    action: "restart",
    ...described,
    delayMs: backoffDelayMs(input.restartDelayMs, input.restartCount),
  };
}

/**
 * The restart count after the agent has been healthy since `healthySinceMs`:
 * reset to 0 once it has been healthy for `stableAfterMs`.
 */
export function restartCountAfterStableRun(
  restartCount: number,
  healthySinceMs: number | undefined,
  nowMs: number,
  stableAfterMs: number,
): number {
  if (healthySinceMs === undefined) return restartCount;
  return nowMs - healthySinceMs >= stableAfterMs ? 0 : restartCount;
}
