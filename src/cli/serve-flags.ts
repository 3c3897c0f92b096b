import { parseArgs } from "node:util";
import { SERVER_CONFIG_KEYS, type ServerConfigKey } from "../config/server-config-keys.ts";

/** What `atoll-deploy serve` was given on its command line. */
export type ServeFlags =
  | {
      readonly help: boolean;
      /** Flag values keyed by config key: strings as typed, booleans for switches. */
      readonly flags: Partial<Record<ServerConfigKey, string | boolean>>;
      readonly configFile: string | undefined;
    }
  | { readonly error: string };

function usage(): string {
  const rows = SERVER_CONFIG_KEYS.filter((k) => k.flag !== undefined).map((k) => {
    const flag = k.switchValue === undefined ? `${k.flag} VALUE` : `${k.flag}`;
    return `  ${flag.padEnd(30)} ${k.description} (default ${k.defaultText}; env ${k.env})`;
  });
  return [
    "usage: atoll-deploy serve [flags]",
    "",
    "Runs the deployment server on the agents directory until SIGTERM or SIGINT.",
    "",
    "flags:",
    `  ${"--config FILE".padEnd(30)} JSON file whose \`deployment\` object configures the server (default ~/.ollama_server/.ollama_config.json)`,
    ...rows,
    `  ${"-h, --help".padEnd(30)} show this help`,
    "",
  ].join("\n");
}

/** The help text of `serve`, built from the config key table (one source of truth). */
export const SERVE_USAGE = usage();

/** Parses the arguments after `serve`; unknown flags and stray arguments are usage errors. */
export function parseServeFlags(argv: readonly string[]): ServeFlags {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    config: { type: "string" },
    help: { type: "boolean", short: "h" },
  };
  for (const info of SERVER_CONFIG_KEYS) {
    if (info.flag === undefined) continue;
    options[info.flag.slice(2)] = { type: info.switchValue === undefined ? "string" : "boolean" };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false });
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const flags: Partial<Record<ServerConfigKey, string | boolean>> = {};
  for (const info of SERVER_CONFIG_KEYS) {
    if (info.flag === undefined) continue;
    const value = values[info.flag.slice(2)];
    if (value === undefined) continue;
    flags[info.key] = info.switchValue === undefined ? value : info.switchValue;
  }
  const configFile = values.config;
  return {
    help: values.help === true,
    flags,
    configFile: typeof configFile === "string" ? configFile : undefined,
  };
}
