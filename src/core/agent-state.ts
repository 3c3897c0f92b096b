/**
 * The agent lifecycle as data: state names, the legal edges between them, and
 * the one function allowed to change an agent's state (docs/lifecycle.md).
 */

/** An agent's process state (SPEC §4): the proto `AgentState` without its `AGENT_STATE_` prefix. */
export type AgentStateName =
  | "DISCOVERED"
  | "STARTING"
  | "RUNNING"
  | "BACKOFF"
  | "STOPPING"
  | "STOPPED"
  | "FAILED"
  | "INVALID";

/** An agent's health (SPEC §4): the proto `HealthStatus` without its `HEALTH_STATUS_` prefix. */
export type HealthName = "UNKNOWN" | "HEALTHY" | "UNHEALTHY";

/** States that count against `max_agents` and hold a port lease. */
export const LIVE_STATES: ReadonlySet<AgentStateName> = new Set([
  "STARTING",
  "RUNNING",
  "BACKOFF",
  "STOPPING",
]);

export function isLive(state: AgentStateName): boolean {
  return LIVE_STATES.has(state);
}

/**
 * The legal hops between public states. One event may make several hops (a process group gone,
 * then the definition that became invalid meanwhile applied: STOPPING → STOPPED → INVALID);
 * each hop is checked here. FAILED and STOPPED are reached from a process only through
 * STOPPING: the state says "no process" only once the whole group has exited.
 */
const EDGES: Readonly<Record<AgentStateName, readonly AgentStateName[]>> = {
  // → FAILED directly: the process could not even be spawned (EXECUTABLE_NOT_FOUND).
  DISCOVERED: ["STARTING", "RUNNING", "FAILED", "INVALID"],
  STOPPED: ["STARTING", "RUNNING", "FAILED", "INVALID"],
  FAILED: ["STARTING", "RUNNING", "INVALID"],
  STARTING: ["RUNNING", "BACKOFF", "STOPPING"],
  RUNNING: ["BACKOFF", "STOPPING"],
  // → STOPPED: undeployed with no process left; → FAILED: the next start was impossible.
  BACKOFF: ["STARTING", "STOPPING", "STOPPED", "FAILED"],
  STOPPING: ["STOPPED", "FAILED"],
  INVALID: ["DISCOVERED"],
};

/** True when `from → to` is a legal edge of the lifecycle. */
export function canTransition(from: AgentStateName, to: AgentStateName): boolean {
  return EDGES[from].includes(to);
}

/** How an agent's process ended. `code` is null when it died by a signal. */
export interface ExitRecord {
  readonly code: number | null;
  readonly signal: string | null;
  readonly atMs: number;
}

/** The lifecycle part of an agent's status; changed only by `transition`. */
export interface Lifecycle {
  readonly state: AgentStateName;
  /** UPPER_SNAKE machine reason, "" when none. */
  readonly reason: string;
  readonly message: string;
  /** When the agent entered `state`, ms since epoch. */
  readonly sinceMs: number;
}

export class IllegalTransitionError extends Error {
  override readonly name = "IllegalTransitionError";
}

/**
 * Returns the lifecycle after moving to `to`, or throws IllegalTransitionError for
 * an edge the state machine does not have (a bug in the caller, never user input).
 * Staying in a state is not an edge: relabel it without this check.
 */
export function transition(
  current: Lifecycle,
  to: AgentStateName,
  reason: string,
  message: string,
  nowMs: number,
): Lifecycle {
  if (!canTransition(current.state, to)) {
    throw new IllegalTransitionError(
      `illegal agent state transition ${current.state} -> ${to} (${reason})`,
    );
  }
  return Object.freeze({ state: to, reason, message, sinceMs: nowMs });
}
