/**
 * Reducer handlers for what clients and the server ask of an agent: Deploy, Restart, Undeploy,
 * a server shutdown, an automatic start, adopting a process that survived a daemon restart.
 * A request the agent cannot honour is answered at once and changes nothing durable.
 */
import type { LifecycleEvent } from "./lifecycle-events.ts";
import type { Phase, StartIntent, StopPlan } from "./lifecycle-model.ts";
import { configInvalid, superseded } from "./lifecycle-outcomes.ts";
import { applyLatestDefinition, beginStart } from "./lifecycle-starts.ts";
import type { Step } from "./lifecycle-step.ts";

const MANUAL: StartIntent = { manual: true, restart: false, waiters: [] };

function withWaiter(intent: StartIntent | undefined, waiter: number): StartIntent {
  const base = intent ?? MANUAL;
  return { ...base, manual: true, waiters: [...base.waiters, waiter] };
}

/** Deploy: start unless live; wait until RUNNING and healthy (joining a start under way). */
export function onDeploy<D>(t: Step<D>, waiter: number): void {
  const { phase } = t;
  switch (phase.kind) {
    case "idle":
      beginStart(t, phase.shown, withWaiter(undefined, waiter), 0, false);
      return;
    case "invalid":
      t.fail([waiter], configInvalid(t.m.name, phase.problem.message));
      return;
    case "acquiring":
      if (phase.queued.length > 0) {
        t.moveTo({ ...phase, queued: [...phase.queued, { type: "deploy", waiter }] });
      } else {
        t.moveTo({
          ...phase,
          intent: { ...phase.intent, waiters: [...phase.intent.waiters, waiter] },
        });
      }
      return;
    case "starting":
      t.moveTo({
        ...phase,
        intent: { ...phase.intent, waiters: [...phase.intent.waiters, waiter] },
      });
      return;
    case "running":
      // Already running: OK with the current agent (idempotent, SPEC §6).
      t.settle([waiter], { ok: true, killed: false });
      return;
    case "backoff":
      // The restart is coming: wait for it like for any start.
      t.moveTo({ ...phase, waiters: [...phase.waiters, waiter] });
      return;
    case "stopping":
      t.moveTo({ ...phase, plan: { ...phase.plan, next: withWaiter(phase.plan.next, waiter) } });
      return;
  }
}

function restartPlan(waiters: readonly number[]): StopPlan {
  return {
    reason: "RESTART_REQUESTED",
    end: { kind: "request" },
    stopWaiters: [],
    startWaiters: [],
    next: { manual: true, restart: false, waiters },
    keepDesired: false,
  };
}

/** Restart: stop if live (keeping port and slot), then start like Deploy; resets the count. */
export function onRestart<D>(t: Step<D>, waiter: number): void {
  const { phase } = t;
  const latest = t.m.definitions.latest;
  if (latest.kind === "invalid") {
    // Refused before anything stops: the running process is left as it is.
    t.fail([waiter], configInvalid(t.m.name, latest.message));
    return;
  }
  switch (phase.kind) {
    case "idle":
    case "invalid":
      onDeploy(t, waiter);
      return;
    case "running":
    case "starting":
      t.moveTo(
        {
          kind: "stopping",
          port: phase.port,
          group: phase.process,
          leaderAlive: true,
          plan: restartPlan([...(phase.kind === "starting" ? phase.intent.waiters : []), waiter]),
        },
        "RESTART_REQUESTED",
        `stopping pid ${phase.process.pid}`,
      );
      terminateLive(t, phase.process.generation, phase.process.pid);
      return;
    case "acquiring":
      // Nothing runs yet: the start under way is the restart, unless operations wait before it.
      if (phase.queued.length > 0) {
        t.moveTo({ ...phase, queued: [...phase.queued, { type: "restart", waiter }] });
      } else {
        onDeploy(t, waiter);
      }
      return;
    case "backoff":
      if (phase.reap !== undefined) {
        // The old group is being terminated already: its end starts the new process.
        t.moveTo(
          {
            kind: "stopping",
            port: phase.port,
            group: phase.reap,
            leaderAlive: false,
            plan: restartPlan([...phase.waiters, waiter]),
          },
          "RESTART_REQUESTED",
          "waiting for the old process group to exit",
        );
      } else {
        beginStart(
          t,
          "BACKOFF",
          withWaiter({ ...MANUAL, waiters: phase.waiters }, waiter),
          phase.port,
          true,
        );
      }
      return;
    case "stopping":
      t.moveTo({ ...phase, plan: { ...phase.plan, next: withWaiter(phase.plan.next, waiter) } });
      return;
  }
}

function terminateLive<D>(t: Step<D>, generation: number, pid: number): void {
  t.emit({
    type: "terminateGroup",
    generation,
    pid,
    stopTimeoutMs: t.m.definitions.inEffect?.settings.stopTimeoutMs ?? 10_000,
    leaderExited: false,
  });
}

/** Undeploy (or, with `shutdown`, a server shutdown that keeps the desired state). */
export function onStop<D>(t: Step<D>, waiter: number, shutdown: boolean): void {
  const { phase } = t;
  const by = shutdown ? "a server shutdown" : "an undeploy";
  const reason = shutdown ? "SERVER_SHUTDOWN" : "STOP_REQUESTED";
  const plan: StopPlan = {
    reason,
    end: { kind: "request" },
    stopWaiters: [waiter],
    startWaiters: [],
    next: undefined,
    keepDesired: shutdown,
  };
  switch (phase.kind) {
    case "idle":
    case "invalid":
      if (!shutdown) t.update({ desired: "stopped" });
      t.settle([waiter], { ok: true, killed: false });
      return;
    case "acquiring":
      t.moveTo({
        ...phase,
        queued: [...phase.queued, { type: shutdown ? "shutdown" : "undeploy", waiter }],
      });
      return;
    case "starting":
    case "running":
      if (phase.kind === "starting") t.fail(phase.intent.waiters, superseded(t.m.name, by));
      t.moveTo(
        { kind: "stopping", port: phase.port, group: phase.process, leaderAlive: true, plan },
        reason,
        `stopping pid ${phase.process.pid}`,
      );
      terminateLive(t, phase.process.generation, phase.process.pid);
      return;
    case "backoff":
      t.fail(phase.waiters, superseded(t.m.name, by));
      if (phase.reap !== undefined) {
        // The port is released only once the old group (grandchildren too) is gone.
        t.moveTo(
          { kind: "stopping", port: phase.port, group: phase.reap, leaderAlive: false, plan },
          reason,
          "waiting for the old process group to exit",
        );
        return;
      }
      t.emit({ type: "releasePort" });
      t.emit({ type: "releaseSlot" });
      if (!shutdown) t.update({ desired: "stopped" });
      t.moveTo({ kind: "idle", shown: "STOPPED" }, "STOPPED", "stopped on request");
      t.settle([waiter], { ok: true, killed: false });
      applyLatestDefinition(t);
      return;
    case "stopping":
      t.fail(phase.plan.next?.waiters ?? [], superseded(t.m.name, by));
      t.moveTo({
        ...phase,
        plan: {
          ...phase.plan,
          stopWaiters: [...phase.plan.stopWaiters, waiter],
          next: undefined,
          keepDesired: phase.plan.keepDesired && shutdown,
        },
      });
      return;
  }
}

/**
 * An automatic start (the definition's `autostart`, or deployed when the last daemon stopped):
 * it records the wish at once and goes through the restart policy when it fails.
 */
export function onAutostart<D>(t: Step<D>): void {
  const { phase } = t;
  if (phase.kind === "invalid") {
    t.log("warn", "not started automatically: the definition is invalid", {
      error: phase.problem.message,
    });
    return;
  }
  if (phase.kind !== "idle") return;
  t.update({ desired: "running" });
  beginStart(t, phase.shown, { manual: false, restart: false, waiters: [] }, 0, false);
}

/** A process that survived a daemon restart: RUNNING, reason ADOPTED, probed at once. */
export function onAdopt<D>(t: Step<D>, event: Extract<LifecycleEvent<D>, { type: "adopt" }>): void {
  const { pid, startTimeTicks, command, port, startTimeMs } = event;
  if (t.phase.kind !== "idle") {
    t.log("warn", "not adopting a process: the agent is not idle", { pid });
    return;
  }
  const generation = t.m.nextGeneration;
  t.update({ nextGeneration: generation + 1, desired: "running", startTimeMs, restartCount: 0 });
  const phase: Phase = {
    kind: "running",
    port,
    process: { generation, pid, startTimeTicks, command, adopted: true },
    healthySinceMs: undefined,
    consecutiveFailures: 0,
  };
  t.moveTo(phase, "ADOPTED", `adopted live process ${pid} after a server restart`);
  // Counted against max_agents like any live agent (a smaller limit than before is not enforced).
  t.emit({ type: "reserveSlot" });
  t.armTimer("liveness", 0, generation);
}
