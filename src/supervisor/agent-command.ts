import type { AgentDefinition } from "../config/agent-definition.ts";
import { type AgentOwnership, SUPERVISOR_TOKEN_ENV } from "./agent-ownership.ts";

/** Fills `{port}` `{host}` `{config}` `{name}` `{dir}` in one argv element. */
function fillPlaceholders(arg: string, def: AgentDefinition, port: number, host: string): string {
  return arg.replace(/\{(port|host|config|name|dir)\}/g, (_, key: string) => {
    switch (key) {
      case "port":
        return String(port);
      case "host":
        return host;
      case "config":
        return def.configPath;
      case "name":
        return def.name;
      default:
        return def.dir;
    }
  });
}

/**
 * The argv of the agent process: `[deployment].command` with placeholders filled
 * and argv[0] mapped by `resolveCommand` (the bundled `atoll-agent` runs on this Node).
 * Never joined into a shell string.
 */
export function buildAgentArgv(
  def: AgentDefinition,
  port: number,
  host: string,
  resolveCommand: (argv0: string) => readonly string[],
): string[] {
  const [first, ...rest] = def.deployment.command.map((a) => fillPlaceholders(a, def, port, host));
  if (first === undefined) throw new Error(`agent ${def.name} has an empty command`);
  return [...resolveCommand(first), ...rest];
}

/**
 * The agent's environment: inherited, plus `[deployment].env`, plus the variables
 * the server always sets (SPEC §2, and the agent's ownership token when `ownership` is given,
 * `ATOLL_SUPERVISOR_TOKEN`, by which the next daemon recognises its processes), which win over
 * both. An inherited token or the marker of earlier daemons is never passed on.
 */
export function buildAgentEnv(
  def: AgentDefinition,
  port: number,
  host: string,
  baseEnv: Readonly<Record<string, string | undefined>>,
  ownership?: AgentOwnership,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(baseEnv)) {
    if (value !== undefined) env[key] = value;
  }
  Object.assign(env, def.deployment.env, {
    PORT: String(port),
    ATOLL_AGENT_NAME: def.name,
    ATOLL_AGENT_PORT: String(port),
    ATOLL_AGENT_HOST: host,
    ATOLL_AGENT_CONFIG: def.configPath,
  });
  delete env[SUPERVISOR_TOKEN_ENV];
  delete env.ATOLL_SUPERVISOR_STATE_DIR;
  if (ownership !== undefined) env[SUPERVISOR_TOKEN_ENV] = ownership.tokenFor(def.name);
  return env;
}
