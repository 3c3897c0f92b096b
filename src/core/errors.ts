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
  | "UNAUTHENTICATED"
  /** A client stream sent more bytes in total than its method allows. RESOURCE_EXHAUSTED. */
  | "REQUEST_TOO_LARGE"
  /** The backend cannot do this (an optional capability it lacks). UNIMPLEMENTED. */
  | "NOT_SUPPORTED"
  /**
   * An agent package was refused (SPEC §12): checksum, size, entry count, a path, link or device
   * entry, or its definition; the message says which. INVALID_ARGUMENT.
   */
  | "PACKAGE_INVALID"
  /** A package's provisioning (npm, venv) failed or timed out; the message ends with its last output. FAILED_PRECONDITION. */
  | "PROVISIONING_FAILED"
  /** An agent of that name is installed from another archive; replacing it needs `force`. FAILED_PRECONDITION. */
  | "PACKAGE_EXISTS"
  /** The package's name is defined in the agents directory, which an install never shadows. FAILED_PRECONDITION. */
  | "AGENT_NAME_TAKEN"
  /** RemoveAgent of an agent that was not installed as a package (it is in the agents directory). FAILED_PRECONDITION. */
  | "AGENT_NOT_INSTALLED"
  /** Another install or remove of the same agent is under way. ABORTED. */
  | "INSTALL_IN_PROGRESS"
  /** Too many installs are under way at once. RESOURCE_EXHAUSTED. */
  | "TOO_MANY_INSTALLS"
  /** An embedded server was asked for agents before `start()`, or is disabled. UNAVAILABLE. */
  | "SERVER_NOT_STARTED"
  /**
   * An embedded server could not start for a reason other than its configuration: the address
   * is in use, a TLS file cannot be read, the cluster does not answer. UNAVAILABLE.
   */
  | "SERVER_START_FAILED";

/**
 * An expected failure, safe to show to clients: `message` must not leak internals. The error
 * every operation of the server (and of `DeploymentServer`) fails with; `reason` (= `code`) is
 * the `google.rpc.ErrorInfo` reason a gRPC client receives for it.
 */
export class DeployError extends Error {
  override readonly name = "DeployError";
  /** The stable UPPER_SNAKE code (`AGENT_NOT_FOUND`, ...). */
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

  /** The `ErrorInfo.reason` sent to gRPC clients: the same as `code`. */
  get reason(): DeployErrorCode {
    return this.code;
  }
}

/** True when `error` is a DeployError, optionally of the given code. */
export function isDeployError(error: unknown, code?: DeployErrorCode): error is DeployError {
  return error instanceof DeployError && (code === undefined || error.code === code);
}
