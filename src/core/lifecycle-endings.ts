/**
 * Reducer handlers for the end of a process: a failure and what the restart policy makes of it
 * (BACKOFF, or STOPPING towards FAILED/STOPPED), the exit of a leader, the end of a group and
 * what follows it (STOPPED or FAILED, or the next start). Events of another generation than the
 * current one are dropped.
 */
import type { ExitRecord } from "./agent-state.ts";
import { nextStartDefinition, type Phase } from "./lifecycle-model.ts";
import { startFailure } from "./lifecycle-outcomes.ts";
import { applyLatestDefinition, beginStart } from "./lifecycle-starts.ts";
import type { Step } from "./lifecycle-step.ts";
import {
  decideAfterFailure,
  type FailureCause,
  restartCountAfterStableRun,
} from "./restart-policy.ts";

type Stopping = Extract<Phase, { kind: "stopping" }>;

/** The current process failed (exit, start timeout, liveness, memory): the restart policy decides. */
export function onFailure<D>(t: Step<D>, cause: FailureCause): void {
  const { phase } = t;
  if (phase.kind !== "starting" && phase.kind !== "running") return;
  const monitor = t.m.definitions.inEffect?.settings;
  // The policy of the next start: a fixed definition also fixes how (and whether) it restarts.
  const policy = nextStartDefinition(t.m.definitions)?.settings;
  if (monitor === undefined || policy === undefined) return;
  const running = phase.kind === "running";
  const restartCount = running
    ? restartCountAfterStableRun(
        t.m.restartCount,
        phase.healthySinceMs,
        t.nowMs,
        monitor.stableAfterMs,
      )
    : t.m.restartCount;
  t.update({ restartCount });
  const decision = decideAfterFailure({
    cause,
    duringStart: !running,
    manualStart: !running && phase.intent.manual,
    autoRestart: policy.autoRestart,
    restartCount,
    maxRestarts: policy.maxRestarts,
    restartDelayMs: policy.restartDelayMs,
  });
  const { process } = phase;
  const leaderExited = cause.kind === "exit";
  const waiters = running ? [] : phase.intent.waiters;
  const terminate = (): void =>
    t.emit({
      type: "terminateGroup",
      generation: process.generation,
      pid: process.pid,
      stopTimeoutMs: monitor.stopTimeoutMs,
      leaderExited,
    });
  switch (decision.action) {
    case "keep":
      // Unhealthy without auto_restart: reported, and probing goes on.
      t.armTimer("liveness", monitor.healthCheckIntervalMs, process.generation);
      return;
    case "restart":
      t.moveTo(
        {
          kind: "backoff",
          port: phase.port,
          nextAttemptAtMs: t.nowMs + decision.delayMs,
          reap: process,
          due: false,
          token: process.generation,
          waiters,
        },
        decision.reason,
        decision.message,
      );
      terminate();
      t.armTimer("backoff", decision.delayMs, process.generation);
      return;
    case "stopped":
    case "failed":
      t.moveTo(
        {
          kind: "stopping",
          port: phase.port,
          group: process,
          leaderAlive: !leaderExited,
          plan: {
            reason: decision.reason,
            end: {
              kind: "decided",
              state: decision.action === "stopped" ? "STOPPED" : "FAILED",
              reason: decision.reason,
              message: decision.message,
            },
            stopWaiters: [],
            startWaiters: waiters,
            next: undefined,
            keepDesired: false,
          },
        },
        decision.reason,
        decision.message,
      );
      terminate();
      return;
  }
}

/** The backoff is over and the old group gone: the automatic restart begins. */
export function startFromBackoff<D>(t: Step<D>, phase: Extract<Phase, { kind: "backoff" }>): void {
  beginStart(
    t,
    "BACKOFF",
    { manual: false, restart: true, waiters: phase.waiters },
    phase.port,
    true,
  );
}

/** The group of a stopping agent is gone: STOPPED or FAILED, then whatever comes next. */
export function finishStop<D>(t: Step<D>, phase: Stopping, killed: boolean): void {
  const { plan } = phase;
  const end =
    plan.end.kind === "decided"
      ? plan.end
      : killed
        ? {
            state: "STOPPED" as const,
            reason: "KILLED_AFTER_GRACE",
            message: "did not exit within stop_timeout; killed with SIGKILL",
          }
        : { state: "STOPPED" as const, reason: "STOPPED", message: "stopped on request" };
  t.moveTo({ kind: "idle", shown: end.state }, end.reason, end.message);
  t.fail(plan.startWaiters, startFailure(t.m.name, t.m.label, t.m.lastExit, t.m.healthMessage));
  t.settle(plan.stopWaiters, { ok: true, killed });
  if (plan.next !== undefined) {
    beginStart(t, end.state, plan.next, phase.port, true);
    return;
  }
  t.emit({ type: "releasePort" });
  t.emit({ type: "releaseSlot" });
  if (!plan.keepDesired) t.update({ desired: "stopped" });
  applyLatestDefinition(t);
}

export function onExited<D>(t: Step<D>, generation: number, exit: ExitRecord): void {
  const { phase } = t;
  switch (phase.kind) {
    case "starting":
    case "running":
      if (phase.process.generation !== generation) return;
      t.update({ lastExit: exit });
      t.log("info", "agent process exited", {
        pid: phase.process.pid,
        code: exit.code,
        signal: exit.signal,
      });
      onFailure(t, { kind: "exit", code: exit.code, signal: exit.signal });
      return;
    case "stopping":
      if (phase.group.generation !== generation || !phase.leaderAlive) return;
      t.update({ lastExit: exit });
      t.moveTo({ ...phase, leaderAlive: false });
      return;
    case "backoff":
      if (phase.reap?.generation === generation) t.update({ lastExit: exit });
      return;
    default:
      return;
  }
}

export function onGroupGone<D>(t: Step<D>, generation: number, killed: boolean): void {
  const { phase } = t;
  if (phase.kind === "backoff" && phase.reap?.generation === generation) {
    if (phase.due) startFromBackoff(t, phase);
    else t.moveTo({ ...phase, reap: undefined });
  } else if (phase.kind === "stopping" && phase.group.generation === generation) {
    finishStop(t, phase, killed);
  }
}
