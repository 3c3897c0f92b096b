/**
 * Parsing the command line of `atoll-deploy` (the commands and options themselves are in
 * `command-spec.ts`). Pure: reads only the arguments and environment it is given.
 *
 * Shape: `atoll-deploy [global options] <command> [arguments and options]`. Global options may
 * also follow the command. `serve` takes its own flags (see `serve-flags.ts`) after the word
 * `serve` and nothing before it.
 */
import { parseArgs } from "node:util";
import {
  type ClientCommand,
  type ClientOptions,
  COMMANDS,
  type CommandLine,
  type CommandName,
  commandUsage,
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_LOG_LINES,
  DEFAULT_SERVER,
  DEFAULT_WATCH_RETRIES,
  GLOBAL_OPTIONS,
  GLOBAL_VALUE_FLAGS,
  mainUsage,
  type OptionSpec,
} from "./command-spec.ts";

export {
  type AgentOperation,
  type ClientCommand,
  type ClientOptions,
  COMMAND_NAMES,
  type CommandLine,
  type CommandName,
  commandUsage,
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_LOG_LINES,
  DEFAULT_SERVER,
  DEFAULT_WATCH_RETRIES,
  mainUsage,
} from "./command-spec.ts";

function isCommandName(word: string): word is CommandName {
  return Object.hasOwn(COMMANDS, word);
}

/** Index of the command word: the first argument that is neither an option nor its value. */
function commandIndex(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] ?? "";
    if (arg === "--") return i + 1 < argv.length ? i + 1 : -1;
    if (!arg.startsWith("-") || arg === "-") return i;
    if (GLOBAL_VALUE_FLAGS.has(arg)) i += 1;
  }
  return -1;
}

class UsageError extends Error {}

type Values = Record<string, string | boolean | undefined>;

function parse(
  args: readonly string[],
  options: Readonly<Record<string, OptionSpec>>,
): { values: Values; positionals: string[] } {
  const config: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const [name, spec] of Object.entries(options)) {
    config[name] =
      spec.short === undefined ? { type: spec.type } : { type: spec.type, short: spec.short };
  }
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: config,
      strict: true,
      allowPositionals: true,
    });
    return { values: values as Values, positionals };
  } catch (error) {
    // parseArgs explains unknown options and missing values well; keep its first sentence.
    const message = error instanceof Error ? error.message : String(error);
    const first = (message.split("\n")[0] ?? message).split(". ")[0] ?? message;
    throw new UsageError(first.replace(/\.$/, ""));
  }
}

function stringValue(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

function seconds(values: Values, name: string): number | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value <= 0) {
    throw new UsageError(`--${name} must be a positive number of seconds, not "${text}"`);
  }
  return Math.round(value * 1000);
}

function count(values: Values, name: string, flag: string): number | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} must be a whole number, not "${text}"`);
  return Number(text);
}

function nonEmpty(env: Readonly<Record<string, string | undefined>>, key: string) {
  const value = env[key];
  return value === undefined || value === "" ? undefined : value;
}

function clientOptions(
  values: Values,
  env: Readonly<Record<string, string | undefined>>,
): ClientOptions {
  const tlsCert = stringValue(values, "tls-cert");
  const tlsKey = stringValue(values, "tls-key");
  const tlsCa = stringValue(values, "tls-ca");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  const server = stringValue(values, "server") ?? nonEmpty(env, "ATOLL_DEPLOY_SERVER");
  if (server !== undefined && server.trim() === "") throw new UsageError("--server is empty");
  return {
    server: server ?? DEFAULT_SERVER,
    tokenFile: stringValue(values, "token-file"),
    tlsCa,
    tlsCert,
    tlsKey,
    json: values.json === true,
    noColor: values["no-color"] === true,
    connectTimeoutMs: seconds(values, "connect-timeout") ?? DEFAULT_CONNECT_TIMEOUT_S * 1000,
  };
}

function oneName(positionals: readonly string[]): string {
  const [agent, ...extra] = positionals;
  if (agent === undefined || agent === "") throw new UsageError("missing agent name");
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  return agent;
}

function noNames(positionals: readonly string[]): void {
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
}

function buildCommand(name: CommandName, values: Values, positionals: string[]): ClientCommand {
  switch (name) {
    case "deploy":
    case "undeploy":
    case "restart":
      return { name, agent: oneName(positionals), timeoutMs: seconds(values, "timeout") };
    case "status":
      return { name, agent: oneName(positionals) };
    case "list":
      // `list deployment` is the shell's spelling; accept it here too.
      if (positionals.length === 1 && positionals[0] === "deployment") return { name };
      noNames(positionals);
      return { name };
    case "watch":
      return {
        name,
        agents: positionals,
        maxRetries: count(values, "max-retries", "--max-retries") ?? DEFAULT_WATCH_RETRIES,
      };
    case "logs":
      return {
        name,
        agent: oneName(positionals),
        follow: values.follow === true,
        lines: count(values, "lines", "-n/--lines") ?? DEFAULT_LOG_LINES,
      };
    case "shell":
      noNames(positionals);
      return { name };
  }
}

/**
 * Parses the arguments after the program name. Never throws: usage problems come back as
 * `usage-error` with the usage text to print.
 */
export function parseCommandLine(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): CommandLine {
  const at = commandIndex(argv);
  const word = at === -1 ? undefined : argv[at];
  if (word === "serve") {
    if (at > 0) {
      return {
        kind: "usage-error",
        message: "serve takes its flags after the word serve",
        usage: mainUsage(),
      };
    }
    return { kind: "serve", argv: argv.slice(at + 1) };
  }
  if (word === undefined) {
    try {
      const { values } = parse(argv, {
        ...GLOBAL_OPTIONS,
        version: { type: "boolean", short: "V", help: "" },
      });
      if (values.version === true) return { kind: "version" };
      if (values.help === true) return { kind: "help", text: mainUsage() };
      return { kind: "usage-error", message: "missing command", usage: mainUsage() };
    } catch (error) {
      return { kind: "usage-error", message: (error as Error).message, usage: mainUsage() };
    }
  }
  const rest = [...argv.slice(0, at), ...argv.slice(at + 1)];
  if (word === "help") {
    const topic = rest.find((arg) => !arg.startsWith("-"));
    if (topic === undefined) return { kind: "help", text: mainUsage() };
    if (topic === "serve") return { kind: "serve", argv: ["--help"] };
    if (isCommandName(topic)) return { kind: "help", text: commandUsage(topic) };
    return { kind: "usage-error", message: `unknown command "${topic}"`, usage: mainUsage() };
  }
  if (!isCommandName(word)) {
    return { kind: "usage-error", message: `unknown command "${word}"`, usage: mainUsage() };
  }
  try {
    const { values, positionals } = parse(rest, { ...GLOBAL_OPTIONS, ...COMMANDS[word].options });
    if (values.help === true) return { kind: "help", text: commandUsage(word) };
    const options = clientOptions(values, env);
    return { kind: "client", command: buildCommand(word, values, positionals), options };
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return {
      kind: "usage-error",
      message: `${word}: ${error.message}`,
      usage: commandUsage(word),
    };
  }
}

/**
 * Parses one line typed at the shell prompt into a command (shell-only words like `help` and
 * `exit` are handled by the shell before this). Options are those of the command line, except
 * that the shell's own connection options stay in force.
 */
export function parseShellCommand(
  words: readonly string[],
): { readonly command: ClientCommand } | { readonly error: string } {
  const [word, ...args] = words;
  if (word === undefined) return { error: "empty command" };
  if (!isCommandName(word) || word === "shell" || word === "watch") {
    return { error: `unknown command "${word}"` };
  }
  const allowed = word === "logs" ? { lines: COMMANDS.logs.options.lines as OptionSpec } : {};
  try {
    const { values, positionals } = parse(args, allowed);
    return { command: buildCommand(word, values, positionals) };
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return { error: `${word}: ${error.message} (usage: ${COMMANDS[word].synopsis})` };
  }
}
