/**
 * Typed domain errors with stable string codes. Exactly one module
 * (`src/rpc/error-mapping.ts`) maps them to gRPC status codes and
 * `google.rpc.ErrorInfo`; everything else throws or returns these.
 */

/** Stable UPPER_SNAKE codes, sent to clients as `ErrorInfo.reason`. */
export type DeployErrorCode =
  /** No agent with that name is known. NOT_FOUND. */
  | "AGENT_NOT_FOUND"
  /** The agent's definition is unusable. FAILED_PRECONDITION. */
  | "AGENT_CONFIG_INVALID"
  /** `max_agents` agents are live already. RESOURCE_EXHAUSTED. */
  | "MAX_AGENTS_REACHED"
  /** No port between base_port and max_port is free. RESOURCE_EXHAUSTED. */
  | "NO_FREE_PORT"
  /** The agent's fixed `[deployment].port` is held by another process or agent. FAILED_PRECONDITION. */
  | "PORT_UNAVAILABLE"
  /** The process could not be spawned (missing or non-executable command). FAILED_PRECONDITION. */
  | "AGENT_START_FAILED"
  /** The agent exited before its first healthy probe. FAILED_PRECONDITION. */
  | "AGENT_EXITED_DURING_START"
  /** The agent was not healthy within `start_timeout`. DEADLINE_EXCEEDED. */
  | "AGENT_START_TIMEOUT"
  /** Another operation (Undeploy, shutdown) took over while this one waited. ABORTED. */
  | "OPERATION_SUPERSEDED"
  /** The agent name is empty, too long or has characters outside the allowed set. INVALID_ARGUMENT. */
  | "INVALID_AGENT_NAME"
  /** Any other malformed request field. INVALID_ARGUMENT. */
  | "INVALID_ARGUMENT"
  /** Too many concurrent watch streams, overall or from one client. RESOURCE_EXHAUSTED. */
  | "TOO_MANY_WATCHERS"
  /** Too many concurrent StreamLogs follow streams, overall or from one client. RESOURCE_EXHAUSTED. */
  | "TOO_MANY_LOG_STREAMS"
  /** A watcher could not keep up with the events. RESOURCE_EXHAUSTED. */
  | "WATCHER_TOO_SLOW"
  /** The server is draining. UNAVAILABLE. */
  | "SERVER_SHUTTING_DOWN"
  /** Missing or wrong bearer token. UNAUTHENTICATED. */
  | "UNAUTHENTICATED";

/** An expected failure, safe to show to clients: `message` must not leak internals. */
export class DeployError extends Error {
  override readonly name = "DeployError";
  readonly code: DeployErrorCode;
  /** Extra machine-readable facts, sent as `ErrorInfo.metadata` (for example `agent`). */
  readonly metadata: Readonly<Record<string, string>>;

  constructor(
    code: DeployErrorCode,
    message: string,
    metadata: Record<string, string> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = code;
    this.metadata = Object.freeze({ ...metadata });
  }
}

/** True when `error` is a DeployError, optionally of the given code. */
export function isDeployError(error: unknown, code?: DeployErrorCode): error is DeployError {
  return error instanceof DeployError && (code === undefined || error.code === code);
}
