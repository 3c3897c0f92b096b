/**
 * Parsing the command line of `atoll-deploy` (the commands and options themselves are in
 * `command-options.ts`, what a parsed line is in `command-spec.ts`). Pure: reads only the
 * arguments and environment it is given.
 *
 * Shape: `atoll-deploy [global options] <command> [arguments and options]`. Global options may
 * also follow the command. `serve` takes its own flags (see `serve-flags.ts`) after the word
 * `serve` and nothing before it; `context` and `render` have their own parsers
 * (`context-command-line.ts`, `render-command-line.ts`).
 */
import { commandUsage, contextUsage, mainUsage, renderUsage } from "./command-help.ts";
import {
  COMMANDS,
  GLOBAL_OPTIONS,
  GLOBAL_VALUE_FLAGS,
  type OptionSpec,
} from "./command-options.ts";
import {
  type ClientCommand,
  type ClientOptions,
  type CommandLine,
  type CommandName,
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_LOG_LINES,
  DEFAULT_SERVER,
  DEFAULT_WATCH_RETRIES,
  type ServerSelection,
} from "./command-spec.ts";
import { parseContextCommand } from "./context-command-line.ts";
import {
  count,
  nonEmpty,
  parse,
  seconds,
  stringValue,
  UsageError,
  type Values,
} from "./parse-options.ts";
import { parseRenderCommand } from "./render-command-line.ts";

// The parser's public face: what a parsed line is, and the help the CLI prints.
export { commandUsage, mainUsage } from "./command-help.ts";
export { COMMAND_NAMES } from "./command-options.ts";
export {
  type AgentOperation,
  type ClientCommand,
  type ClientOptions,
  type CommandLine,
  type CommandName,
  type ContextAction,
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_LOG_LINES,
  DEFAULT_SERVER,
  DEFAULT_WATCH_RETRIES,
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
