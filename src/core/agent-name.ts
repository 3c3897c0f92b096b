/** Agent names (SPEC §2): what is valid, and the refusals every backend words alike. */
import { DeployError } from "./errors.ts";

/** Valid agent names: also safe as file names for logs. */
export const AGENT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** True when `name` is a valid agent name. */
export function isValidAgentName(name: string): boolean {
  return AGENT_NAME_PATTERN.test(name);
}

/**
 * Refuses a malformed name the way every backend does (`AgentBackend`).
 * @throws DeployError INVALID_AGENT_NAME when `name` is empty or does not match the pattern.
 */
export function checkAgentName(name: string): void {
  if (isValidAgentName(name)) return;
  throw new DeployError(
    "INVALID_AGENT_NAME",
    name === "" ? "agent name is empty" : "agent name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
  );
}

/** The AGENT_NOT_FOUND every backend answers for a well-formed name it does not know. */
export function agentNotFound(name: string): DeployError {
  return new DeployError("AGENT_NOT_FOUND", `agent ${name} not found`, { agent: name });
}
