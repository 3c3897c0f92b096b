/**
 * An agent's `AgentStatus` on the Kubernetes backend, derived (pure) from what the caches hold:
 * its definition entry and the facts of its Deployment and pods (`cluster-state.ts`). The same
 * status shape as the local supervisor's; fields with no meaning on a cluster (pid, memory, log
 * path) are zero or empty.
 */
import type { AgentDefinition, DefinitionEntry } from "../config/agent-definition.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import type { ClusterFacts } from "./cluster-state.ts";
import { DEFAULT_CONTAINER_PORT } from "./render-pod.ts";

export interface AgentViewInput {
  readonly name: string;
  /** From the agents directory; undefined once its definition was removed. */
  readonly entry: DefinitionEntry | undefined;
  readonly facts: ClusterFacts;
  /** Container restarts of the agent's pod that no longer count against its budget. */
  readonly baselineRestarts: number;
  /** The status derived last time (for `stateSinceMs`). */
  readonly previous: AgentStatus | undefined;
  /** The last container exit seen, should the pod that had it be gone. */
  readonly rememberedExit: AgentStatus["lastExit"];
  /** The server's `max_restarts` for definitions that leave it unset. */
  readonly defaultMaxRestarts: number;
  readonly nowMs: number;
}

/** The agent's status. */
export function agentView(input: AgentViewInput): AgentStatus {
  const { name, entry, facts, previous } = input;
  const definition = entry?.kind === "valid" ? entry.definition : undefined;
  const invalid = entry?.kind === "invalid" ? entry : undefined;
  const restarts = Math.max(0, (facts.container?.restartCount ?? 0) - input.baselineRestarts);
  const notLive =
    facts.state === "DISCOVERED" || facts.state === "STOPPED" || facts.state === "FAILED";
  const state = invalid !== undefined && notLive ? "INVALID" : facts.state;
  const sameState = previous?.state === state && previous.stateReason === facts.reason;
  return {
    name,
    state,
    health: facts.health,
    port: notLive ? 0 : clusterPort(definition),
    pid: 0,
    restartCount: restarts,
    maxRestarts: definition?.deployment.maxRestarts ?? input.defaultMaxRestarts,
    configPath: definition?.configPath ?? invalid?.configPath ?? "",
    version: definition?.version ?? "",
    description: definition?.description ?? "",
    capabilities: definition?.capabilities ?? [],
    startTimeMs: facts.startTimeMs,
    stateReason: state === "INVALID" ? "CONFIG_INVALID" : facts.reason,
    stateMessage: state === "INVALID" ? (invalid?.message ?? "") : facts.message,
    stateSinceMs: sameState ? previous.stateSinceMs : input.nowMs,
    lastExit: facts.lastExit ?? input.rememberedExit,
    nextRestartAtMs: undefined,
    lastHealthCheckMs: undefined,
    healthMessage: facts.health === "UNHEALTHY" ? facts.message : "",
    memoryBytes: 0,
    warnings: definition?.warnings ?? invalid?.warnings ?? [],
    definitionRemoved: entry === undefined,
    logPath: "",
    host: facts.host,
    instance: facts.instance,
  };
}

function clusterPort(definition: AgentDefinition | undefined): number {
  if (definition === undefined) return 0;
  return definition.deployment.port === 0 ? DEFAULT_CONTAINER_PORT : definition.deployment.port;
}
