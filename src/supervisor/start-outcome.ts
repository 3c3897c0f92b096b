import type { AgentStatus } from "../core/agent-status.ts";
import { DeployError } from "../core/errors.ts";

/** True when a start has succeeded: RUNNING and HEALTHY. */
export function isStartOutcome(status: AgentStatus): boolean {
  return status.state === "RUNNING" && status.health === "HEALTHY";
}

function describeExit(status: AgentStatus): string {
  const exit = status.lastExit;
  if (exit === undefined) return status.stateMessage;
  return exit.signal !== null ? `killed by ${exit.signal}` : `exit code ${exit.code ?? "unknown"}`;
}

/**
 * The error a waiting Deploy/Restart gets for `status`, or undefined while the
 * start is still in progress (STARTING, BACKOFF) or has succeeded.
 */
export function outcomeError(status: AgentStatus): DeployError | undefined {
  const meta = { agent: status.name, state_reason: status.stateReason };
  switch (status.state) {
    case "STARTING":
    case "BACKOFF":
    case "RUNNING":
      return undefined;
    case "FAILED":
      if (status.stateReason === "START_TIMEOUT") {
        return new DeployError(
          "AGENT_START_TIMEOUT",
          `agent ${status.name} was not healthy within its start_timeout (${status.healthMessage || "no answer"})`,
          meta,
        );
      }
      if (
        ["EXECUTABLE_NOT_FOUND", "PERMISSION_DENIED", "SPAWN_FAILED"].includes(status.stateReason)
      ) {
        return new DeployError(
          "AGENT_START_FAILED",
          `agent ${status.name}: ${status.stateMessage}`,
          meta,
        );
      }
      return new DeployError(
        "AGENT_EXITED_DURING_START",
        `agent ${status.name} exited during start (${describeExit(status)})`,
        { ...meta, ...exitMetadata(status) },
      );
    case "STOPPED":
      if (status.stateReason === "EXITED") {
        return new DeployError(
          "AGENT_EXITED_DURING_START",
          `agent ${status.name} exited during start (${describeExit(status)})`,
          { ...meta, ...exitMetadata(status) },
        );
      }
      return superseded(status);
    default:
      return superseded(status);
  }
}

function superseded(status: AgentStatus): DeployError {
  return new DeployError(
    "OPERATION_SUPERSEDED",
    `start of agent ${status.name} was interrupted: it is now ${status.state}`,
    { agent: status.name, state_reason: status.stateReason },
  );
}

function exitMetadata(status: AgentStatus): Record<string, string> {
  const exit = status.lastExit;
  if (exit === undefined) return {};
  return exit.signal !== null ? { signal: exit.signal } : { exit_code: String(exit.code) };
}
