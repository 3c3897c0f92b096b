/**
 * Reducer handlers for the life of a process: acquiring a slot, a port and the spawn; the first
 * healthy probe; a failure and what the restart policy makes of it; the end of a group. Every
 * handler checks that the event belongs to the current phase and process generation, and drops
 * it otherwise (a late result for a process the agent has moved on from).
 */
import type { Failure } from "./lifecycle-events.ts";
import {
  type AgentProcess,
  holdsSlot,
  type IdleState,
  nextStartDefinition,
  type Phase,
  type QueuedOperation,
  type StartIntent,
} from "./lifecycle-model.ts";
import { configInvalid, startFailure } from "./lifecycle-outcomes.ts";
import type { Step } from "./lifecycle-step.ts";
import {
  decideAfterFailure,
  type FailureCause,
  restartCountAfterStableRun,
} from "./restart-policy.ts";

type Acquiring = Extract<Phase, { kind: "acquiring" }>;
type Stopping = Extract<Phase, { kind: "stopping" }>;

/** Runs the operations that waited for the start's resources, in their order. */
function requeue<D>(t: Step<D>, queued: readonly QueuedOperation[]): void {
  for (const operation of queued) t.emit({ type: "requeue", operation });
}

/**
 * With the agent not live: makes the latest definition the one in effect (INVALID when it is
 * unusable, DISCOVERED again when an INVALID one was fixed). A removed one changes nothing here.
 */
export function applyLatestDefinition<D>(t: Step<D>): void {
  const { phase } = t;
  if (phase.kind !== "idle" && phase.kind !== "invalid") return;
  const latest = t.m.definitions.latest;
  if (latest.kind === "valid") {
    t.update({ definitions: { ...t.m.definitions, inEffect: latest } });
    if (phase.kind === "invalid") {
      t.moveTo({ kind: "idle", shown: "DISCOVERED" }, "DEFINITION_FIXED", "");
    }
  } else if (latest.kind === "invalid") {
    if (phase.kind === "invalid" && phase.problem.message === latest.message) return;
    t.moveTo({ kind: "invalid", problem: latest }, "AGENT_CONFIG_INVALID", latest.message);
  }
}

/**
 * Starts the agent's next process. `port` and `slotHeld` say what it holds already (a restart
 * keeps both); what is missing is acquired first. A manual start with an unusable latest
 * definition is refused; an automatic one runs the last valid definition (docs/lifecycle.md).
 */
export function beginStart<D>(
  t: Step<D>,
  shown: IdleState | "BACKOFF",
  intent: StartIntent,
  port: number,
  slotHeld: boolean,
): void {
  const { definitions, name } = t.m;
  const chosen = nextStartDefinition(definitions);
  const latest = definitions.latest;
  if (chosen === undefined || (latest.kind === "invalid" && intent.manual)) {
    const message = latest.kind === "invalid" ? latest.message : `agent ${name} has no definition`;
    const step = slotHeld ? "lease" : "slot";
    refuseStart(
      t,
      { kind: "acquiring", shown, intent, port, step, generation: 0, queued: [] },
      {
        ...configInvalid(name, message),
      },
    );
    return;
  }
  t.update({ definitions: { ...definitions, inEffect: chosen } });
  const base: Acquiring = {
    kind: "acquiring",
    shown,
    intent,
    port,
    step: "slot",
    generation: 0,
    queued: [],
  };
  if (!slotHeld) {
    t.moveTo(base);
    t.emit({ type: "reserveSlot" });
    return;
  }
  const fixed = chosen.settings.fixedPort;
  if (port === 0 || (fixed !== 0 && fixed !== port)) {
    t.moveTo({ ...base, step: "lease" });
    t.emit({ type: "leasePort", fixedPort: fixed });
    return;
  }
  spawnNext(t, base);
}

function spawnNext<D>(t: Step<D>, phase: Acquiring): void {
  const generation = t.m.nextGeneration;
  const definition = t.m.definitions.inEffect?.definition;
  if (definition === undefined) throw new Error(`agent ${t.m.name}: spawn without a definition`);
  t.update({ nextGeneration: generation + 1 });
  t.moveTo({ ...phase, step: "spawn", generation });
  t.emit({ type: "spawn", generation, port: phase.port, definition });
}

/** The start could not get its slot or port: nothing changes, unless it replaced a process. */
function refuseStart<D>(t: Step<D>, phase: Acquiring, failure: Failure): void {
  t.fail(phase.intent.waiters, failure);
  if (!phase.intent.manual) {
    t.log("warn", "automatic start refused", { reason: failure.code, error: failure.message });
  }
  if (phase.port !== 0) t.emit({ type: "releasePort" });
  if (holdsSlot(phase)) t.emit({ type: "releaseSlot" });
  if (phase.port !== 0) {
    // A restart (automatic, or after a Restart stopped it) that cannot go on: FAILED.
    t.update({ desired: "stopped" });
    t.moveTo({ kind: "idle", shown: "FAILED" }, failure.code, failure.message);
  } else if (phase.shown !== "BACKOFF") {
    t.moveTo({ kind: "idle", shown: phase.shown });
  }
  applyLatestDefinition(t);
  requeue(t, phase.queued);
}

export function onSlot<D>(t: Step<D>, refused: Failure | undefined): void {
  const { phase } = t;
  if (phase.kind !== "acquiring" || phase.step !== "slot") return;
  if (refused !== undefined) {
    refuseStart(t, phase, refused);
    return;
  }
  t.moveTo({ ...phase, step: "lease" });
  t.emit({ type: "leasePort", fixedPort: t.m.definitions.inEffect?.settings.fixedPort ?? 0 });
}

export function onLease<D>(t: Step<D>, result: { port: number } | { failure: Failure }): void {
  const { phase } = t;
  if (phase.kind !== "acquiring" || phase.step !== "lease") {
    // A lease granted after the start was given up (a supervisor error): give it back.
    if ("port" in result && (phase.kind === "idle" || phase.kind === "invalid")) {
      t.emit({ type: "releasePort" });
    }
    return;
  }
  if ("failure" in result) refuseStart(t, phase, result.failure);
  else spawnNext(t, { ...phase, port: result.port });
}

export function onSpawned<D>(
  t: Step<D>,
  generation: number,
  pid: number,
  startTimeTicks: number | undefined,
): void {
  const { phase } = t;
  if (phase.kind !== "acquiring" || phase.step !== "spawn" || phase.generation !== generation) {
    // A spawn the agent no longer wants (DESIGN habit 2): end what it produced.
    t.log("warn", "stopping a process spawned after its start was abandoned", { pid });
    t.emit({ type: "terminateGroup", generation, pid, stopTimeoutMs: 0, leaderExited: false });
    return;
  }
  const settings = t.m.definitions.inEffect?.settings;
  if (settings === undefined) throw new Error(`agent ${t.m.name}: spawned without a definition`);
  const { intent } = phase;
  const process: AgentProcess = { generation, pid, startTimeTicks, adopted: false };
  t.update({
    desired: "running",
    startTimeMs: t.nowMs,
    restartCount: intent.manual ? 0 : t.m.restartCount + (intent.restart ? 1 : 0),
  });
  const starting = {
    kind: "starting" as const,
    port: phase.port,
    process,
    intent,
    deadlineMs: t.nowMs + settings.startTimeoutMs,
  };
  t.moveTo(starting, intent.manual ? "START_REQUESTED" : "AUTO_RESTART", `pid ${pid}`);
  if (settings.healthPath === "") {
    markStarted(t, starting, "process alive (HTTP probing disabled)");
  } else {
    t.emit({
      type: "probe",
      generation,
      port: phase.port,
      path: settings.healthPath,
      timeoutMs: Math.min(settings.healthTimeoutMs, settings.startTimeoutMs),
    });
    t.armTimer("startDeadline", settings.startTimeoutMs, generation);
  }
  requeue(t, phase.queued);
}

export function onSpawnFailed<D>(
  t: Step<D>,
  generation: number,
  reason: string,
  message: string,
): void {
  const { phase } = t;
  if (phase.kind !== "acquiring" || phase.step !== "spawn" || phase.generation !== generation)
    return;
  t.emit({ type: "releasePort" });
  t.emit({ type: "releaseSlot" });
  t.update({ desired: "stopped" });
  t.moveTo({ kind: "idle", shown: "FAILED" }, reason, message);
  t.fail(phase.intent.waiters, {
    code: "AGENT_START_FAILED",
    message: `${t.m.name}: ${message}`,
    metadata: { agent: t.m.name, state_reason: reason },
  });
  applyLatestDefinition(t);
  requeue(t, phase.queued);
}

/** The first healthy probe (or a live process, without HTTP probing): RUNNING. */
export function markStarted<D>(
  t: Step<D>,
  phase: Extract<Phase, { kind: "starting" }>,
  message: string,
): void {
  const settings = t.m.definitions.inEffect?.settings;
  if (settings === undefined) return;
  t.moveTo(
    {
      kind: "running",
      port: phase.port,
      process: phase.process,
      healthySinceMs: t.nowMs,
      consecutiveFailures: 0,
    },
    "STARTED",
    message,
  );
  t.update({
    health: "HEALTHY",
    healthMessage: message,
    restartCount: restartCountAfterStableRun(
      t.m.restartCount,
      t.nowMs,
      t.nowMs,
      settings.stableAfterMs,
    ),
  });
  t.settle(phase.intent.waiters, { ok: true, killed: false });
  t.armTimer("liveness", settings.healthCheckIntervalMs, phase.process.generation);
}

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

export function onExited<D>(
  t: Step<D>,
  generation: number,
  exit: { code: number | null; signal: string | null; atMs: number },
): void {
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
