/**
 * The failures a waiting Deploy, Restart or Undeploy is told (SPEC §6 reasons): built from the
 * machine's data, so the reducer decides them like everything else.
 */
import type { ExitRecord, Lifecycle } from "./agent-state.ts";
import type { Failure } from "./lifecycle-events.ts";

/** Reasons of a FAILED state in which no agent process was to blame (AGENT_START_FAILED). */
const START_FAILED_REASONS: readonly string[] = [
  "EXECUTABLE_NOT_FOUND",
  "PERMISSION_DENIED",
  "SPAWN_FAILED",
  "INTERNAL_ERROR",
];

export function configInvalid(name: string, message: string): Failure {
  return { code: "AGENT_CONFIG_INVALID", message, metadata: { agent: name } };
}

/** The start a caller waits for was overtaken by another operation (`by`: "an undeploy"...). */
export function superseded(name: string, by: string): Failure {
  return {
    code: "OPERATION_SUPERSEDED",
    message: `start of agent ${name} was interrupted by ${by}`,
    metadata: { agent: name },
  };
}

export function shuttingDown(name: string): Failure {
  return {
    code: "SERVER_SHUTTING_DOWN",
    message: "the server is shutting down",
    metadata: { agent: name },
  };
}

function describeExit(label: Lifecycle, exit: ExitRecord | undefined): string {
  if (exit === undefined) return label.message;
  return exit.signal !== null ? `killed by ${exit.signal}` : `exit code ${exit.code ?? "unknown"}`;
}

function exitMetadata(exit: ExitRecord | undefined): Record<string, string> {
  if (exit === undefined) return {};
  return exit.signal !== null ? { signal: exit.signal } : { exit_code: String(exit.code) };
}

/**
 * What the callers of a start are told when it ended in `label` (FAILED or STOPPED) instead of
 * RUNNING and healthy.
 */
export function startFailure(
  name: string,
  label: Lifecycle,
  lastExit: ExitRecord | undefined,
  healthMessage: string,
): Failure {
  const meta = { agent: name, state_reason: label.reason };
  if (label.state === "FAILED" && label.reason === "START_TIMEOUT") {
    return {
      code: "AGENT_START_TIMEOUT",
      message: `agent ${name} was not healthy within its start_timeout (${healthMessage || "no answer"})`,
      metadata: meta,
    };
  }
  if (label.state === "FAILED" && START_FAILED_REASONS.includes(label.reason)) {
    return {
      code: "AGENT_START_FAILED",
      message: `agent ${name}: ${label.message}`,
      metadata: meta,
    };
  }
  if (label.state === "FAILED" || label.reason === "EXITED") {
    return {
      code: "AGENT_EXITED_DURING_START",
      message: `agent ${name} exited during start (${describeExit(label, lastExit)})`,
      metadata: { ...meta, ...exitMetadata(lastExit) },
    };
  }
  return {
    code: "OPERATION_SUPERSEDED",
    message: `start of agent ${name} was interrupted: it is now ${label.state}`,
    metadata: meta,
  };
}
