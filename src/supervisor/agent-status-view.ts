/** An agent's full status (proto `Agent`, domain form) read off its lifecycle machine. */
import os from "node:os";
import type { AgentDefinition } from "../config/agent-definition.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import { type AgentMachine, heldPort, liveProcess } from "../core/lifecycle-model.ts";

/** Facts of the runner that are not part of the machine. */
export interface StatusContext {
  /** `<logDir>/<name>.log`. */
  readonly logPath: string;
  /** Server `max_restarts`, shown while the agent has no valid definition. */
  readonly defaultMaxRestarts: number;
}

/** `Agent.host` of every local agent: this machine (read once; it does not change under us). */
const HOST_NAME = os.hostname();

export function statusOf(m: AgentMachine<AgentDefinition>, ctx: StatusContext): AgentStatus {
  const { phase, label } = m;
  const invalid = phase.kind === "invalid" ? phase.problem : undefined;
  const valid = invalid === undefined ? m.definitions.inEffect : undefined;
  const def = valid?.definition;
  return {
    name: m.name,
    state: label.state,
    health: m.health,
    port: heldPort(phase),
    pid: liveProcess(phase)?.pid ?? 0,
    restartCount: m.restartCount,
    maxRestarts: valid?.settings.maxRestarts ?? ctx.defaultMaxRestarts,
    configPath: def?.configPath ?? invalid?.configPath ?? "",
    version: def?.version ?? "",
    description: def?.description ?? "",
    capabilities: def?.capabilities ?? [],
    startTimeMs: m.startTimeMs,
    stateReason: label.reason,
    stateMessage: label.message,
    stateSinceMs: label.sinceMs,
    lastExit: m.lastExit,
    nextRestartAtMs: phase.kind === "backoff" ? phase.nextAttemptAtMs : undefined,
    lastHealthCheckMs: m.lastHealthCheckMs,
    healthMessage: m.healthMessage,
    memoryBytes: m.memoryBytes,
    warnings: def?.warnings ?? invalid?.warnings ?? [],
    definitionRemoved: m.definitions.latest.kind === "removed",
    logPath: ctx.logPath,
    host: HOST_NAME,
    instance: "",
    installedPackage: def?.installedPackage,
  };
}
