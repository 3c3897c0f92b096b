/** Valid agent names (SPEC §2): also safe as file names for logs. */
export const AGENT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** True when `name` is a valid agent name. */
export function isValidAgentName(name: string): boolean {
  return AGENT_NAME_PATTERN.test(name);
}
