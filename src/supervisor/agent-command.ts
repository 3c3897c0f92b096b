import type { AgentDefinition } from "../config/agent-definition.ts";

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
 * Marks an agent process with the state dir of the daemon that spawned it, so that the next
 * daemon on that state dir recognises it in `/proc/<pid>/environ` (beyond SPEC §2's variables).
 */
export const SUPERVISOR_ENV = "ATOLL_SUPERVISOR_STATE_DIR";

/**
 * The agent's environment: inherited, plus `[deployment].env`, plus the variables
 * the server always sets (SPEC §2, and {@link SUPERVISOR_ENV} when `stateDir` is given),
 * which win over both.
 */
export function buildAgentEnv(
  def: AgentDefinition,
  port: number,
  host: string,
  baseEnv: Readonly<Record<string, string | undefined>>,
  stateDir?: string,
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
  if (stateDir !== undefined) env[SUPERVISOR_ENV] = stateDir;
  return env;
}
