import type { AgentStateName, ExitRecord, HealthName } from "./agent-state.ts";

/**
 * The domain form of one agent's full status (proto `Agent`), built on demand
 * by its runner. Times are ms since epoch; `undefined` means "not set".
 */
export interface AgentStatus {
  readonly name: string;
  readonly state: AgentStateName;
  readonly health: HealthName;
  /** 0 when no port is leased. */
  readonly port: number;
  /** 0 when no process. */
  readonly pid: number;
  readonly restartCount: number;
  readonly maxRestarts: number;
  readonly configPath: string;
  readonly version: string;
  readonly description: string;
  readonly capabilities: readonly string[];
  readonly startTimeMs: number | undefined;
  readonly stateReason: string;
  readonly stateMessage: string;
  readonly stateSinceMs: number;
  readonly lastExit: ExitRecord | undefined;
  readonly nextRestartAtMs: number | undefined;
  readonly lastHealthCheckMs: number | undefined;
  readonly healthMessage: string;
  readonly memoryBytes: number;
  readonly warnings: readonly string[];
  readonly definitionRemoved: boolean;
  readonly logPath: string;
  /** Where the agent runs: this host's name (local), or its pod's node name (Kubernetes). */
  readonly host: string;
  /** The pod name (Kubernetes); "" locally. */
  readonly instance: string;
}

/** One observable change of an agent, as published to watchers. */
export interface AgentChange {
  /** Monotonic across the whole server and across its restarts (see EventHub). */
  readonly revision: number;
  /** "removed": the agent is no longer known (definition gone while not live). */
  readonly kind: "change" | "removed";
  readonly name: string;
  readonly previousState: AgentStateName;
  readonly previousHealth: HealthName;
  readonly status: AgentStatus;
  readonly atMs: number;
}
