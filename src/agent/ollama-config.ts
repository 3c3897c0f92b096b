/**
 * Where the Ollama server is and which defaults it supplies, read from ATOLL's user config
 * `~/.ollama_server/.ollama_config.json` (keys `base_url`, `port`, `model`, `temperature`,
 * `request_timeout`). The file is read defensively: a missing file means defaults, a malformed
 * file or a wrongly typed key means a warning and the default for that key. Environment
 * `OLLAMA_HOST` (Ollama's own variable: `host`, `host:port` or a URL) overrides the address.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { LlmSettings } from "./definition.ts";

export const DEFAULT_OLLAMA_BASE_URL = "http://localhost:11434";
const DEFAULT_OLLAMA_PORT = 11434;
/** Used when neither `[llm].timeout` nor the Ollama config's `request_timeout` is set. */
export const DEFAULT_LLM_TIMEOUT_MS = 60_000;
/** The built-in model that answers locally, without an LLM. */
export const ECHO_MODEL = "echo";

/** What the Ollama config file (and `OLLAMA_HOST`) contribute. */
export interface OllamaConfig {
  /** Origin plus optional path prefix, no trailing slash, e.g. `http://localhost:11434`. */
  readonly baseUrl: string;
  readonly model: string | undefined;
  readonly temperature: number | undefined;
  readonly timeoutMs: number | undefined;
}

export interface OllamaConfigResult {
  readonly config: OllamaConfig;
  /** One-line problems found in the file or in `OLLAMA_HOST`; never fatal. */
  readonly warnings: readonly string[];
}

/** Path of the Ollama config file below `homeDir`. */
export function ollamaConfigPath(homeDir: string): string {
  return join(homeDir, ".ollama_server", ".ollama_config.json");
}

/**
 * Reads `<homeDir>/.ollama_server/.ollama_config.json` and applies `ollamaHostEnv`
 * (the value of `OLLAMA_HOST`, if any). Never throws.
 */
export async function loadOllamaConfig(
  homeDir: string,
  ollamaHostEnv: string | undefined,
): Promise<OllamaConfigResult> {
  const file = ollamaConfigPath(homeDir);
  let config = defaults();
  const warnings: string[] = [];
  try {
    const [parsed, problems] = parseOllamaConfig(await readFile(file, "utf8"), file);
    config = parsed;
    warnings.push(...problems);
  } catch (cause) {
    // A missing file is the normal case (defaults); anything else is worth a warning.
    const code = (cause as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") {
      warnings.push(`${file}: unreadable (${(cause as Error).message}); using defaults`);
    }
  }
  const host = ollamaHostEnv?.trim();
  if (host !== undefined && host !== "") {
    const baseUrl = normaliseBaseUrl(host, undefined);
    if (baseUrl === undefined) {
      warnings.push(`OLLAMA_HOST: not a host or URL: ${JSON.stringify(host)}; ignored`);
    } else {
      config = { ...config, baseUrl };
    }
  }
  return { config, warnings };
}

/** Parses the file's text; wrong keys become warnings. Exported for tests. */
export function parseOllamaConfig(text: string, file: string): [OllamaConfig, string[]] {
  const warnings: string[] = [];
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (cause) {
    warnings.push(`${file}: invalid JSON (${(cause as Error).message}); using defaults`);
    return [defaults(), warnings];
  }
  if (typeof root !== "object" || root === null || Array.isArray(root)) {
    warnings.push(`${file}: top level is not a JSON object; using defaults`);
    return [defaults(), warnings];
  }
  const raw = root as Record<string, unknown>;
  const pick = <T>(key: string, accept: (v: unknown) => v is T, expected: string) => {
    const value = raw[key];
    if (value === undefined || value === null) return undefined;
    if (accept(value)) return value;
    warnings.push(`${file}: ${key}: expected ${expected}; ignored`);
    return undefined;
  };

  const baseUrlRaw = pick("base_url", isNonEmptyString, "a URL string");
  const portRaw = pick("port", isPortLike, "a port number 1-65535");
  const port = portRaw === undefined ? undefined : Number(portRaw);
  let baseUrl = normaliseBaseUrl(baseUrlRaw ?? "http://localhost", port);
  if (baseUrl === undefined) {
    warnings.push(`${file}: base_url: not a URL: ${JSON.stringify(baseUrlRaw)}; ignored`);
    baseUrl = normaliseBaseUrl("http://localhost", port) ?? DEFAULT_OLLAMA_BASE_URL;
  }
  const timeoutS = pick("request_timeout", isPositiveNumber, "a positive number of seconds");
  return [
    {
      baseUrl,
      model: pick("model", isNonEmptyString, "a string"),
      temperature: pick("temperature", isFiniteNumber, "a number"),
      timeoutMs: timeoutS === undefined ? undefined : Math.round(timeoutS * 1000),
    },
    warnings,
  ];
}

/** The LLM call settings after merging the definition's `[llm]` over the Ollama config. */
export interface EffectiveLlmSettings {
  /** `[llm].model`, else the Ollama config's `model`, else `echo`. */
  readonly model: string;
  readonly temperature: number | undefined;
  readonly systemPrompt: string | undefined;
  readonly timeoutMs: number;
  readonly baseUrl: string;
}

/** Definition keys win over the Ollama config (as in ATOLL: `[llm]` overrides the parent). */
export function effectiveLlmSettings(llm: LlmSettings, ollama: OllamaConfig): EffectiveLlmSettings {
  return Object.freeze({
    model: llm.model ?? ollama.model ?? ECHO_MODEL,
    temperature: llm.temperature ?? ollama.temperature,
    systemPrompt: llm.systemPrompt,
    timeoutMs: llm.timeoutMs ?? ollama.timeoutMs ?? DEFAULT_LLM_TIMEOUT_MS,
    baseUrl: ollama.baseUrl,
  });
}

function defaults(): OllamaConfig {
  return {
    baseUrl: DEFAULT_OLLAMA_BASE_URL,
    model: undefined,
    temperature: undefined,
    timeoutMs: undefined,
  };
}

/**
 * `localhost`, `host:port`, `http://host[:port][/prefix]` → `http://host:port[/prefix]`.
 * An explicit `port` wins over one in the URL; with neither, 11434. Undefined when unusable.
 */
export function normaliseBaseUrl(value: string, port: number | undefined): string | undefined {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    // Not parseable as a URL: the caller reports it and keeps its default.
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (url.hostname === "") return undefined;
  // URL drops a scheme's default port (`http://h:80` has port ""), so look at the text too.
  const explicitPort = /^[^:]+:\/\/[^/?#]*:\d+(?:[/?#]|$)/.test(withScheme);
  if (port !== undefined) url.port = String(port);
  else if (!explicitPort) url.port = String(DEFAULT_OLLAMA_PORT);
  const path = url.pathname.replace(/\/+$/, "");
  return `${url.protocol}//${url.host}${path}`;
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === "string" && v.trim() !== "";
}
function isFiniteNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}
function isPositiveNumber(v: unknown): v is number {
  return isFiniteNumber(v) && v > 0;
}
function isPortLike(v: unknown): v is number | string {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 65535;
}
