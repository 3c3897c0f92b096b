/**
 * Reducer handlers for watching a process: start probes every `startProbeIntervalMs` until
 * `start_timeout`, then one liveness round (memory, then probe) per `health_check_interval`,
 * never overlapping: the next round is armed only when the last one has answered.
 */

import { onFailure, startFromBackoff } from "./lifecycle-endings.ts";
import type { TimerName } from "./lifecycle-events.ts";
import { markStarted } from "./lifecycle-starts.ts";
import type { Step } from "./lifecycle-step.ts";
import { restartCountAfterStableRun } from "./restart-policy.ts";

export function onProbed<D>(t: Step<D>, generation: number, ok: boolean, message: string): void {
  const { phase } = t;
  const settings = t.m.definitions.inEffect?.settings;
  if (settings === undefined) return;
  if (phase.kind === "starting" && phase.process.generation === generation) {
    t.update({ lastHealthCheckMs: t.nowMs, healthMessage: message });
    if (ok) markStarted(t, phase, message);
    else t.armTimer("startProbe", settings.startProbeIntervalMs, generation);
    return;
  }
  if (phase.kind !== "running" || phase.process.generation !== generation) return;
  t.update({ lastHealthCheckMs: t.nowMs, healthMessage: message });
  if (ok) {
    const healthySinceMs = t.m.health === "HEALTHY" ? (phase.healthySinceMs ?? t.nowMs) : t.nowMs;
    t.moveTo({ ...phase, consecutiveFailures: 0, healthySinceMs });
    t.update({
      health: "HEALTHY",
      restartCount: restartCountAfterStableRun(
        t.m.restartCount,
        healthySinceMs,
        t.nowMs,
        settings.stableAfterMs,
      ),
    });
    t.armTimer("liveness", settings.healthCheckIntervalMs, generation);
    return;
  }
  const failures = phase.consecutiveFailures + 1;
  t.moveTo({ ...phase, consecutiveFailures: failures, healthySinceMs: undefined });
  if (failures >= settings.failureThreshold && t.m.health !== "UNHEALTHY") {
    t.update({ health: "UNHEALTHY" });
    onFailure(t, { kind: "unhealthy" });
  } else {
    t.armTimer("liveness", settings.healthCheckIntervalMs, generation);
  }
}

export function onMemorySampled<D>(
  t: Step<D>,
  generation: number,
  bytes: number | undefined,
): void {
  const { phase } = t;
  const settings = t.m.definitions.inEffect?.settings;
  if (phase.kind !== "running" || phase.process.generation !== generation || !settings) return;
  if (bytes !== undefined) t.update({ memoryBytes: bytes });
  const limit = settings.memoryLimitBytes;
  if (bytes !== undefined && limit !== undefined && bytes > limit) {
    onFailure(t, { kind: "memory" });
  } else if (settings.healthPath === "") {
    t.armTimer("liveness", settings.healthCheckIntervalMs, generation);
  } else {
    t.emit({
      type: "probe",
      generation,
      port: phase.port,
      path: settings.healthPath,
      timeoutMs: settings.healthTimeoutMs,
    });
  }
}

export function onTimer<D>(t: Step<D>, timer: TimerName, token: number): void {
  const { phase } = t;
  const settings = t.m.definitions.inEffect?.settings;
  if (settings === undefined) return;
  switch (timer) {
    case "startProbe":
    case "startDeadline": {
      if (phase.kind !== "starting" || phase.process.generation !== token) return;
      const remainingMs = phase.deadlineMs - t.nowMs;
      if (timer === "startDeadline" || remainingMs <= 0) {
        onFailure(t, { kind: "start-timeout" });
        return;
      }
      t.emit({
        type: "probe",
        generation: token,
        port: phase.port,
        path: settings.healthPath,
        timeoutMs: Math.min(settings.healthTimeoutMs, remainingMs),
      });
      return;
    }
    case "liveness":
      if (phase.kind !== "running" || phase.process.generation !== token) return;
      t.emit({ type: "sampleMemory", generation: token, pid: phase.process.pid });
      return;
    case "backoff":
      if (phase.kind !== "backoff" || phase.token !== token) return;
      if (phase.reap !== undefined) t.moveTo({ ...phase, due: true });
      else startFromBackoff(t, phase);
      return;
  }
}
