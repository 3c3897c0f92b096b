/**
 * Minimal reader of an agent definition for the `atoll-agent` runtime. Deliberately independent
 * of `src/config/` (the supervisor's validator): the runtime needs only identity and `[llm]`,
 * and accepts every other section as it is.
 */
import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";

/** `[llm]` settings as written in the definition; undefined = not set. */
export interface LlmSettings {
  /** Ollama model name, or `echo` for the built-in local echo model. */
  readonly model: string | undefined;
  readonly temperature: number | undefined;
  readonly systemPrompt: string | undefined;
  /** Request timeout in milliseconds (`timeout` or upstream's `request_timeout`, in seconds). */
  readonly timeoutMs: number | undefined;
}

/** What the runtime knows about its agent. */
export interface AgentRuntimeDefinition {
  /** Absolute path of the definition file. */
  readonly path: string;
  /** `[agent].name` / JSON `agent.name` / JSON top-level `name`, else the directory name. */
  readonly name: string;
  /** Default "". */
  readonly version: string;
  /** Default "". */
  readonly description: string;
  readonly llm: LlmSettings;
}

/** A definition that is missing, unreadable, unparseable or has a wrongly typed key. */
export class AgentDefinitionError extends Error {
  override readonly name = "AgentDefinitionError";
}

type Table = Record<string, unknown>;

/**
 * Reads and parses `path` (`.json` as JSON, anything else as TOML).
 * @throws AgentDefinitionError with a one-line message naming the file (and the line for TOML
 *   syntax errors, the key path for type errors).
 */
export async function readAgentDefinition(path: string): Promise<AgentRuntimeDefinition> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = await readFile(absolute, "utf8");
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const problem =
      code === "ENOENT"
        ? "file not found"
        : code === "EISDIR"
          ? "is a directory"
          : (cause as Error).message;
    throw new AgentDefinitionError(`${absolute}: ${problem}`, { cause });
  }
  return parseAgentDefinition(text, absolute);
}

/**
 * Parses definition text; `absolutePath` names the file in errors, picks the syntax (`.json`
 * suffix → JSON) and supplies the fallback name (its directory name).
 * @throws AgentDefinitionError
 */
export function parseAgentDefinition(text: string, absolutePath: string): AgentRuntimeDefinition {
  const isJson = absolutePath.toLowerCase().endsWith(".json");
  const root = isJson ? parseJson(text, absolutePath) : parseTomlText(text, absolutePath);
  const at = (key: string) => `${absolutePath}: ${key}`;

  // JSON has two dialects: nested `{"agent": {...}, "llm": {...}}` (mirrors the TOML sections)
  // and the flat legacy one with identity keys at the top level.
  const nested = !isJson || isTable(root.agent);
  const identity: Table = nested ? (optionalTable(root, "agent", at) ?? {}) : root;
  const prefix = nested ? "agent." : "";

  // An empty name falls back like a missing one.
  const name =
    optionalString(identity, "name", prefix, at) || basename(dirname(absolutePath)) || "agent";
  const llmTable = optionalTable(root, "llm", at) ?? {};

  const timeoutS =
    optionalNumber(llmTable, "timeout", "llm.", at) ??
    optionalNumber(llmTable, "request_timeout", "llm.", at);
  if (timeoutS !== undefined && !(timeoutS > 0)) {
    throw new AgentDefinitionError(`${at("llm.timeout")}: must be a positive number of seconds`);
  }

  return Object.freeze({
    path: absolutePath,
    name,
    version: optionalString(identity, "version", prefix, at) ?? "",
    description: optionalString(identity, "description", prefix, at) ?? "",
    llm: Object.freeze({
      model: optionalString(llmTable, "model", "llm.", at),
      temperature: optionalNumber(llmTable, "temperature", "llm.", at),
      systemPrompt: optionalString(llmTable, "system_prompt", "llm.", at),
      timeoutMs: timeoutS === undefined ? undefined : Math.round(timeoutS * 1000),
    }),
  });
}

function parseJson(text: string, file: string): Table {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new AgentDefinitionError(`${file}: invalid JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (!isTable(value)) throw new AgentDefinitionError(`${file}: top level must be a JSON object`);
  return value;
}

function parseTomlText(text: string, file: string): Table {
  try {
    return parseToml(text) as Table;
  } catch (cause) {
    if (cause instanceof TomlError) {
      // smol-toml's message carries a multi-line code frame; keep its first line only.
      const problem = (cause.message.split("\n")[0] ?? "invalid TOML").replace(
        /^Invalid TOML document: /,
        "",
      );
      throw new AgentDefinitionError(
        `${file}:${cause.line}:${cause.column}: TOML syntax error: ${problem}`,
        { cause },
      );
    }
    throw new AgentDefinitionError(`${file}: ${(cause as Error).message}`, { cause });
  }
}

function isTable(value: unknown): value is Table {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function optionalTable(table: Table, key: string, at: (key: string) => string): Table | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (!isTable(value)) throw new AgentDefinitionError(`${at(key)}: must be a table`);
  return value;
}

function optionalString(
  table: Table,
  key: string,
  prefix: string,
  at: (key: string) => string,
): string | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (typeof value !== "string") {
    throw new AgentDefinitionError(`${at(prefix + key)}: must be a string`);
  }
  return value;
}

function optionalNumber(
  table: Table,
  key: string,
  prefix: string,
  at: (key: string) => string,
): number | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new AgentDefinitionError(`${at(prefix + key)}: must be a number`);
  }
  return value;
}
