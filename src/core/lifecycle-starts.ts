/**
 * Reducer handlers for the start of a process: acquiring a `max_agents` slot, a port and the
 * spawn, and the first healthy probe. Every handler checks that the event belongs to the current
 * phase and process generation, and drops it otherwise (a late result for a start the agent has
 * moved on from). A refused start changes nothing durable.
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
import { configInvalid } from "./lifecycle-outcomes.ts";
import type { Step } from "./lifecycle-step.ts";
import { restartCountAfterStableRun } from "./restart-policy.ts";

type Acquiring = Extract<Phase, { kind: "acquiring" }>;

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
    const phase: Acquiring = {
      kind: "acquiring",
      shown,
      intent,
      port,
      step,
      generation: 0,
      queued: [],
    };
    refuseStart(t, phase, configInvalid(name, message));
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
  } else {
    // Nothing was held before this start: back to where it was (never BACKOFF, which holds a port).
    t.moveTo({ kind: "idle", shown: phase.shown === "BACKOFF" ? "FAILED" : phase.shown });
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
  command?: readonly string[],
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
  const process: AgentProcess = { generation, pid, startTimeTicks, command, adopted: false };
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
  // In the daemon's log too: the cause may be on the host (a log path that is a symbolic link).
  t.log("warn", "the agent could not be started", { reason, error: message });
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
