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
  CONTEXT_ADD_OPTIONS,
  type CommandLine,
  type CommandName,
  type ContextAction,
  commandUsage,
  contextUsage,
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_LOG_LINES,
  DEFAULT_SERVER,
  DEFAULT_WATCH_RETRIES,
  GLOBAL_OPTIONS,
  GLOBAL_VALUE_FLAGS,
  mainUsage,
  type OptionSpec,
  RENDER_OPTIONS,
  type RenderCommand,
  renderUsage,
  type ServerSelection,
} from "./command-spec.ts";

export {
  type AgentOperation,
  type ClientCommand,
  type ClientOptions,
  COMMAND_NAMES,
  type CommandLine,
  type CommandName,
  type ContextAction,
  commandUsage,
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_LOG_LINES,
  DEFAULT_SERVER,
  DEFAULT_WATCH_RETRIES,
  mainUsage,
  type RenderCommand,
  type ServerSelection,
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
  const serverFlag = stringValue(values, "server");
  const contextFlag = stringValue(values, "context");
  if (serverFlag !== undefined && serverFlag.trim() === "") {
    throw new UsageError("--server is empty");
  }
  if (serverFlag !== undefined && contextFlag !== undefined) {
    throw new UsageError("--server and --context name two servers: give one");
  }
  if (contextFlag !== undefined && contextFlag.trim() === "") {
    throw new UsageError("--context is empty");
  }
  const envContext = nonEmpty(env, "ATOLL_DEPLOY_CONTEXT");
  const envServer = nonEmpty(env, "ATOLL_DEPLOY_SERVER");
  // Precedence (docs/cli.md, "Contexts"): --server > --context > ATOLL_DEPLOY_CONTEXT >
  // ATOLL_DEPLOY_SERVER > the contexts file's current context > DEFAULT_SERVER.
  let server = DEFAULT_SERVER;
  let selection: ServerSelection;
  if (serverFlag !== undefined) {
    server = serverFlag;
    selection = { kind: "address" };
  } else if (contextFlag !== undefined) {
    selection = { kind: "context", name: contextFlag, from: "--context" };
  } else if (envContext !== undefined) {
    selection = { kind: "context", name: envContext, from: "ATOLL_DEPLOY_CONTEXT" };
  } else if (envServer !== undefined) {
    server = envServer;
    selection = { kind: "address" };
  } else {
    selection = { kind: "current" };
  }
  return {
    server,
    selection,
    contextName: undefined,
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

/** `--all-contexts` takes every context's own server and credentials: nothing else may say. */
function allContexts(values: Values): boolean {
  if (values["all-contexts"] !== true) return false;
  for (const flag of ["server", "context", "token-file", "tls-ca", "tls-cert", "tls-key"]) {
    if (values[flag] !== undefined) {
      throw new UsageError(`--all-contexts uses each context's own settings: drop --${flag}`);
    }
  }
  return true;
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
      if (positionals.length === 1 && positionals[0] === "deployment") {
        return { name, allContexts: allContexts(values) };
      }
      noNames(positionals);
      return { name, allContexts: allContexts(values) };
    case "watch":
      return {
        name,
        agents: positionals,
        maxRetries: count(values, "max-retries", "--max-retries") ?? DEFAULT_WATCH_RETRIES,
        allContexts: allContexts(values),
      };
    case "logs":
      return {
        name,
        agent: oneName(positionals),
        follow: values.follow === true,
        lines: count(values, "lines", "-n/--lines") ?? DEFAULT_LOG_LINES,
      };
    case "install": {
      const [target, ...extra] = positionals;
      if (target === undefined || target === "")
        throw new UsageError("missing package directory or archive");
      if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
      return {
        name,
        path: target,
        force: values.force === true,
        start: values.start === true,
        timeoutMs: seconds(values, "timeout"),
      };
    }
    case "remove":
      return { name, agent: oneName(positionals), timeoutMs: seconds(values, "timeout") };
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
  if (word === "context") return parseContextCommand(rest);
  if (word === "render") return parseRenderCommand(rest, env);
  if (word === "help") {
    const topic = rest.find((arg) => !arg.startsWith("-"));
    if (topic === undefined) return { kind: "help", text: mainUsage() };
    if (topic === "serve") return { kind: "serve", argv: ["--help"] };
    if (topic === "context") return { kind: "help", text: contextUsage() };
    if (topic === "render") return { kind: "help", text: renderUsage() };
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

function usageError(message: string, usage: string): CommandLine {
  return { kind: "usage-error", message, usage };
}

/** `context list | use NAME | add NAME --server ADDR [...] | remove NAME`. */
function parseContextCommand(argv: readonly string[]): CommandLine {
  const usage = contextUsage();
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parse(argv, CONTEXT_ADD_OPTIONS));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return usageError(`context: ${error.message}`, usage);
  }
  if (values.help === true) return { kind: "help", text: usage };
  const [action, name, ...extra] = positionals;
  const connectionFlags = ["server", "token-file", "tls-ca", "tls-cert", "tls-key"].filter(
    (flag) => values[flag] !== undefined,
  );
  if (action === undefined)
    return usageError("context: missing action (list, use, add, remove)", usage);
  if (extra.length > 0)
    return usageError(`context ${action}: unexpected argument "${extra[0]}"`, usage);
  if (action !== "add" && connectionFlags.length > 0) {
    return usageError(`context ${action}: --${connectionFlags[0]} belongs to context add`, usage);
  }
  let command: ContextAction;
  switch (action) {
    case "list":
      if (name !== undefined)
        return usageError(`context list: unexpected argument "${name}"`, usage);
      command = { action, json: values.json === true };
      break;
    case "use":
    case "remove":
      if (name === undefined) return usageError(`context ${action}: missing context name`, usage);
      command = { action, name };
      break;
    case "add": {
      if (name === undefined) return usageError("context add: missing context name", usage);
      const server = stringValue(values, "server");
      if (server === undefined || server.trim() === "") {
        return usageError("context add: --server ADDR is required", usage);
      }
      const tlsCert = stringValue(values, "tls-cert");
      const tlsKey = stringValue(values, "tls-key");
      if ((tlsCert === undefined) !== (tlsKey === undefined)) {
        return usageError("context add: --tls-cert and --tls-key go together", usage);
      }
      command = {
        action,
        name,
        server,
        tokenFile: stringValue(values, "token-file"),
        tlsCa: stringValue(values, "tls-ca"),
        tlsCert,
        tlsKey,
      };
      break;
    }
    default:
      return usageError(`context: unknown action "${action}" (list, use, add, remove)`, usage);
  }
  return { kind: "context", command };
}

/** `render [name...] [--namespace NS] [--image IMAGE] [--agents-dir DIR]`. */
function parseRenderCommand(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): CommandLine {
  const usage = renderUsage();
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parse(argv, RENDER_OPTIONS));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return usageError(`render: ${error.message}`, usage);
  }
  if (values.help === true) return { kind: "help", text: usage };
  for (const flag of ["namespace", "image", "agents-dir"]) {
    const value = values[flag];
    if (typeof value === "string" && value.trim() === "") {
      return usageError(`render: --${flag} is empty`, usage);
    }
  }
  const command: RenderCommand = {
    names: positionals,
    namespace: stringValue(values, "namespace"),
    image: stringValue(values, "image"),
    agentsDir:
      stringValue(values, "agents-dir") ??
      nonEmpty(env, "ATOLL_DEPLOY_AGENTS_DIRECTORY") ??
      "./atoll_agents",
  };
  return { kind: "render", command };
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
  // Packages are installed from the command line (a local path) and kept out of the shell.
  if (
    !isCommandName(word) ||
    word === "shell" ||
    word === "watch" ||
    word === "install" ||
    word === "remove"
  ) {
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
