/**
 * The agent lifecycle as one pure function (docs/lifecycle.md, DESIGN "The lifecycle is data"):
 * `reduce(state, event, nowMs)` returns the next state and the effects the runner performs, in
 * the manner of the Elm architecture and controller-runtime reconcilers: decisions here, side
 * effects at the edge, their results fed back as events. An event that does not belong to the
 * current phase or process generation changes nothing; an illegal edge of the public state
 * throws IllegalTransitionError from `transition`, the one place that refuses it.
 */

import { onExited, onGroupGone } from "./lifecycle-endings.ts";
import type { Effect, LifecycleEvent } from "./lifecycle-events.ts";
import {
  type AgentMachine,
  heldPort,
  holdsSlot,
  liveProcess,
  type Phase,
} from "./lifecycle-model.ts";
import { onMemorySampled, onProbed, onTimer } from "./lifecycle-monitoring.ts";
import { onAdopt, onAutostart, onDeploy, onRestart, onStop } from "./lifecycle-operations.ts";
import { shuttingDown, startFailure } from "./lifecycle-outcomes.ts";
import {
  applyLatestDefinition,
  onLease,
  onSlot,
  onSpawned,
  onSpawnFailed,
} from "./lifecycle-starts.ts";
import { type Reduction, Step } from "./lifecycle-step.ts";

export type { Reduction };

/** The next state of `state` after `event` at `nowMs`, and the effects to perform. */
export function reduce<D>(
  state: AgentMachine<D>,
  event: LifecycleEvent<D>,
  nowMs: number,
): Reduction<D> {
  if (state.detached) return { state, effects: [] };
  const t = new Step(state, nowMs);
  switch (event.type) {
    case "deploy":
      onDeploy(t, event.waiter);
      break;
    case "restart":
      onRestart(t, event.waiter);
      break;
    case "undeploy":
      onStop(t, event.waiter, false);
      break;
    case "shutdown":
      onStop(t, event.waiter, true);
      break;
    case "detach":
      onDetach(t);
      break;
    case "autostart":
      onAutostart(t);
      break;
    case "adopt":
      onAdopt(t, event);
      break;
    case "slotReserved":
      onSlot(t, undefined);
      break;
    case "slotRefused":
      onSlot(t, event.failure);
      break;
    case "leaseGranted":
      onLease(t, { port: event.port });
      break;
    case "leaseRefused":
      onLease(t, { failure: event.failure });
      break;
    case "spawned":
      onSpawned(t, event.generation, event.pid, event.startTimeTicks, event.command);
      break;
    case "spawnFailed":
      onSpawnFailed(t, event.generation, event.reason, event.message);
      break;
    case "probed":
      onProbed(t, event.generation, event.ok, event.message);
      break;
    case "memorySampled":
      onMemorySampled(t, event.generation, event.bytes);
      break;
    case "exited":
      onExited(t, event.generation, event.exit);
      break;
    case "timerFired":
      onTimer(t, event.timer, event.token);
      break;
    case "groupGone":
      onGroupGone(t, event.generation, event.killed);
      break;
    case "groupStopFailed":
      onGroupStopFailed(t, event.generation, event.message);
      break;
    case "definitionChanged":
      t.update({ definitions: { ...t.m.definitions, latest: event.update } });
      applyLatestDefinition(t);
      break;
    case "internalError":
      onInternalError(t, event.message);
      break;
  }
  return t.finish();
}

/** Every caller waiting on the agent in `phase`. */
function waitersOf(phase: Phase): number[] {
  switch (phase.kind) {
    case "acquiring":
      return [...phase.intent.waiters, ...phase.queued.map((op) => op.waiter)];
    case "starting":
      return [...phase.intent.waiters];
    case "backoff":
      return [...phase.waiters];
    case "stopping":
      return [
        ...phase.plan.stopWaiters,
        ...phase.plan.startWaiters,
        ...(phase.plan.next?.waiters ?? []),
      ];
    default:
      return [];
  }
}

/**
 * Detach (daemon upgrade): stop watching, leave every process running and the durable facts as
 * they are for the next daemon to adopt; waiting callers are told the server is going away.
 */
function onDetach<D>(t: Step<D>): void {
  const { phase } = t;
  t.fail(waitersOf(phase), shuttingDown(t.m.name));
  for (const timer of ["startProbe", "startDeadline", "liveness", "backoff"] as const) {
    t.emit({ type: "cancelTimer", timer });
  }
  const watched =
    liveProcess(phase) ??
    (phase.kind === "backoff" ? phase.reap : phase.kind === "stopping" ? phase.group : undefined);
  if (watched !== undefined) t.emit({ type: "forgetProcess", generation: watched.generation });
  t.update({ detached: true });
}

/**
 * The supervisor could not do what the agent needed (a bug, or the OS refusing to signal a
 * group): the agent ends FAILED with reason INTERNAL_ERROR, through STOPPING when a process of
 * it still runs, so it is never left half-way. The cause is in the server log.
 */
function onInternalError<D>(t: Step<D>, message: string): void {
  const { phase } = t;
  const reason = "INTERNAL_ERROR";
  const text = `supervisor error: ${message}; see the server log`;
  const process = liveProcess(phase) ?? (phase.kind === "backoff" ? phase.reap : undefined);
  if (phase.kind === "idle" || phase.kind === "invalid" || phase.kind === "stopping") return;
  if (process !== undefined && phase.kind !== "acquiring") {
    const leaderAlive = liveProcess(phase) !== undefined;
    t.moveTo(
      {
        kind: "stopping",
        port: phase.port,
        group: process,
        leaderAlive,
        plan: {
          reason,
          end: { kind: "decided", state: "FAILED", reason, message: text },
          stopWaiters: [],
          startWaiters: waitersOf(phase),
          next: undefined,
          keepDesired: false,
        },
      },
      reason,
      text,
    );
    if (leaderAlive) {
      t.emit({
        type: "terminateGroup",
        generation: process.generation,
        pid: process.pid,
        stopTimeoutMs: t.m.definitions.inEffect?.settings.stopTimeoutMs ?? 10_000,
        leaderExited: false,
      });
    }
    return;
  }
  failNow(t, phase, text);
}

/** Terminating a group failed: it may still run, but there is nothing more the agent can do. */
function onGroupStopFailed<D>(t: Step<D>, generation: number, message: string): void {
  const { phase } = t;
  const group =
    phase.kind === "backoff" ? phase.reap : phase.kind === "stopping" ? phase.group : undefined;
  if (group?.generation !== generation) return;
  t.log("error", "could not stop the agent's process group", { pgid: group.pid, error: message });
  failNow(t, phase, `supervisor error: cannot stop process group ${group.pid}: ${message}`);
}

function failNow<D>(t: Step<D>, phase: Phase, message: string): void {
  const stopWaiters = phase.kind === "stopping" ? phase.plan.stopWaiters : [];
  const startWaiters = waitersOf(phase).filter((w) => !stopWaiters.includes(w));
  const effects: Effect<D>[] = [];
  if (heldPort(phase) !== 0) effects.push({ type: "releasePort" });
  if (holdsSlot(phase)) effects.push({ type: "releaseSlot" });
  for (const effect of effects) t.emit(effect);
  t.update({ desired: "stopped" });
  t.moveTo({ kind: "idle", shown: "FAILED" }, "INTERNAL_ERROR", message);
  t.settle(stopWaiters, { ok: true, killed: false });
  t.fail(startWaiters, startFailure(t.m.name, t.m.label, t.m.lastExit, t.m.healthMessage));
  applyLatestDefinition(t);
}
