import type { AgentDefinition } from "../../src/config/agent-definition.ts";
import {
  type ParseDefinitionResult,
  parseAgentDefinition,
} from "../../src/config/parse-definition.ts";

export const TOML_FILE = "/srv/atoll_agents/demo/agent.toml";
export const JSON_FILE = "/srv/atoll_agents/demo/agent.json";

/** The definition of a result expected to be valid. */
export function valid(result: ParseDefinitionResult): AgentDefinition {
  if (!result.ok) throw new Error(`expected a valid definition, got: ${result.message}`);
  return result.definition;
}

/** The failure of a result expected to be invalid. */
export function invalid(result: ParseDefinitionResult): {
  name: string;
  message: string;
  warnings: readonly string[];
} {
  if (result.ok) throw new Error("expected an invalid definition");
  return result;
}

/** Parses `text` as `demo/agent.toml`. */
export function toml(text: string, dirName = "demo"): ParseDefinitionResult {
  return parseAgentDefinition(TOML_FILE, text, dirName);
}

/** Parses `value`, serialised, as `demo/agent.json`. */
export function json(value: unknown, dirName = "demo"): ParseDefinitionResult {
  return parseAgentDefinition(JSON_FILE, JSON.stringify(value), dirName);
}
