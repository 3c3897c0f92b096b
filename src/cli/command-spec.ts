/**
 * What the `atoll-deploy` command line can say: the commands, their options, their defaults,
 * and the help text built from them (one table, so help and parsing cannot drift apart).
 */

/**
 * Where the client connects when nothing says otherwise: no `--server`, `--context`,
 * `ATOLL_DEPLOY_CONTEXT`, `ATOLL_DEPLOY_SERVER`, nor a current context in the contexts file.
 */
export const DEFAULT_SERVER = "127.0.0.1:50051";
/** Time allowed to reach the server (and for quick queries to answer), seconds. */
export const DEFAULT_CONNECT_TIMEOUT_S = 5;
/** Lines `logs` shows when `-n` is not given. */
export const DEFAULT_LOG_LINES = 100;
/** Reconnection attempts of `watch` after a dropped stream before it gives up (exit 3). */
export const DEFAULT_WATCH_RETRIES = 8;

/**
 * Which server a client command talks to, as the command line and environment said; the
 * contexts file is read afterwards (`resolveClientOptions`), in this order of precedence:
 * `--server` > `--context` > `ATOLL_DEPLOY_CONTEXT` > `ATOLL_DEPLOY_SERVER` > the file's
 * `current` > DEFAULT_SERVER (docs/cli.md, "Contexts").
 */
export type ServerSelection =
  /** `--server` or `ATOLL_DEPLOY_SERVER`: this address, no context. */
  | { readonly kind: "address" }
  /** `--context NAME` or `ATOLL_DEPLOY_CONTEXT`. */
  | {
      readonly kind: "context";
      readonly name: string;
      readonly from: "--context" | "ATOLL_DEPLOY_CONTEXT";
    }
  /** Nothing given: the contexts file's current context, else DEFAULT_SERVER. */
  | { readonly kind: "current" };

/** Options every client command takes. */
export interface ClientOptions {
  /** `host:port` or `unix:/path`; DEFAULT_SERVER until a context is resolved. */
  readonly server: string;
  readonly selection: ServerSelection;
  /** The context the connection settings came from, once resolved; undefined for none. */
  readonly contextName: string | undefined;
  readonly tokenFile: string | undefined;
  readonly tlsCa: string | undefined;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  readonly json: boolean;
  readonly noColor: boolean;
  readonly connectTimeoutMs: number;
}

export type AgentOperation = "deploy" | "undeploy" | "restart";

export type ClientCommand =
  | {
      readonly name: AgentOperation;
      readonly agent: string;
      /** Deadline of the whole operation; none (the server bounds it) when undefined. */
      readonly timeoutMs: number | undefined;
    }
  | { readonly name: "status"; readonly agent: string }
  | { readonly name: "list"; readonly allContexts: boolean }
  | {
      readonly name: "watch";
      readonly agents: readonly string[];
      readonly maxRetries: number;
      readonly allContexts: boolean;
    }
  | {
      readonly name: "logs";
      readonly agent: string;
      readonly follow: boolean;
      readonly lines: number;
    }
  | {
      readonly name: "install";
      /** An agent directory (packed by the CLI) or a `.tar.gz` / `.zip` archive. */
      readonly path: string;
      readonly force: boolean;
      readonly start: boolean;
      /** Deadline of the whole install; none when undefined. */
      readonly timeoutMs: number | undefined;
    }
  | { readonly name: "remove"; readonly agent: string; readonly timeoutMs: number | undefined }
  | { readonly name: "shell" };

export type CommandName = ClientCommand["name"];

/** `atoll-deploy context ...`: edits or shows the contexts file; contacts no server. */
export type ContextAction =
  | { readonly action: "list"; readonly json: boolean }
  | { readonly action: "use"; readonly name: string }
  | {
      readonly action: "add";
      readonly name: string;
      readonly server: string;
      readonly tokenFile: string | undefined;
      readonly tlsCa: string | undefined;
      readonly tlsCert: string | undefined;
      readonly tlsKey: string | undefined;
    }
  | { readonly action: "remove"; readonly name: string };

/** `atoll-deploy render [name...]`: prints Kubernetes manifests; contacts no server. */
export interface RenderCommand {
  readonly names: readonly string[];
  readonly namespace: string | undefined;
  readonly image: string | undefined;
  /** As given (flag, else ATOLL_DEPLOY_AGENTS_DIRECTORY, else `./atoll_agents`); resolved against the working directory. */
  readonly agentsDir: string;
}

export type CommandLine =
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "context"; readonly command: ContextAction }
  | { readonly kind: "render"; readonly command: RenderCommand }
  | { readonly kind: "version" }
  | { readonly kind: "serve"; readonly argv: readonly string[] }
  | { readonly kind: "usage-error"; readonly message: string; readonly usage: string }
  | {
      readonly kind: "client";
      readonly command: ClientCommand;
      readonly options: ClientOptions;
    };

export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly short?: string;
  /** `--server ADDR` in help; booleans have none. */
  readonly value?: string;
  readonly help: string;
}

export const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  server: {
    type: "string",
    value: "ADDR",
    help: `server address, host:port or unix:/path (env ATOLL_DEPLOY_SERVER; default ${DEFAULT_SERVER})`,
  },
  "token-file": {
    type: "string",
    value: "FILE",
    help: "send the token in FILE as `authorization: Bearer <token>`",
  },
  "tls-ca": {
    type: "string",
    value: "FILE",
    help: "connect with TLS, trusting the CA certificates in FILE (PEM)",
  },
  "tls-cert": {
    type: "string",
    value: "FILE",
    help: "client certificate for mutual TLS (PEM; with --tls-key and --tls-ca)",
  },
  "tls-key": { type: "string", value: "FILE", help: "private key of --tls-cert (PEM)" },
  context: {
    type: "string",
    value: "NAME",
    help: "use the server and credentials of context NAME (env ATOLL_DEPLOY_CONTEXT; see atoll-deploy context --help)",
  },
  "connect-timeout": {
    type: "string",
    value: "SECONDS",
    help: `give up reaching the server after this long (default ${DEFAULT_CONNECT_TIMEOUT_S})`,
  },
  json: { type: "boolean", help: "machine-readable JSON output (shapes in docs/cli.md)" },
  "no-color": { type: "boolean", help: "no colours (also when NO_COLOR is set)" },
  help: { type: "boolean", short: "h", help: "show help" },
};

/** Options that take a value and may appear before the command word. */
export const GLOBAL_VALUE_FLAGS = new Set(
  Object.entries(GLOBAL_OPTIONS)
    .filter(([, spec]) => spec.type === "string")
    .map(([name]) => `--${name}`),
);

const TIMEOUT_OPTION: OptionSpec = {
  type: "string",
  value: "SECONDS",
  help: "give up waiting for the result after this long (default: wait for the server)",
};

const ALL_CONTEXTS_OPTION: OptionSpec = {
  type: "boolean",
  help: "every context of the contexts file, merged, with a Context column",
};

export interface CommandSpec {
  readonly synopsis: string;
  readonly summary: string;
  readonly description: string;
  readonly options: Readonly<Record<string, OptionSpec>>;
}

export const COMMANDS: Readonly<Record<CommandName, CommandSpec>> = {
  deploy: {
    synopsis: "deploy <name>",
    summary: "start an agent and wait until it is running and healthy",
    description:
      "Starts the agent and waits until it is RUNNING and healthy, or its start has failed.\n" +
      "Deploying an agent that is already running succeeds and changes nothing.\n" +
      "Prints: ✓ Agent <name> deployed on port <port>",
    options: { timeout: TIMEOUT_OPTION },
  },
  undeploy: {
    synopsis: "undeploy <name>",
    summary: "stop an agent gracefully",
    description:
      "Stops the agent (SIGTERM to its process group, SIGKILL after its stop_timeout) and\n" +
      "waits until it is STOPPED. Prints: ✓ Agent <name> stopped",
    options: { timeout: TIMEOUT_OPTION },
  },
  restart: {
    synopsis: "restart <name>",
    summary: "stop an agent if it runs, then start it again",
    description:
      "Stops the agent if it is live, then starts it and waits like deploy. Keeps its port\n" +
      "and resets its restart count. Prints: ✓ Agent <name> restarted on port <port>",
    options: { timeout: TIMEOUT_OPTION },
  },
  status: {
    synopsis: "status <name>",
    summary: "show an agent's full status",
    description:
      "Prints Agent, Status, Port, PID, Started, Health, Restarts, Config, and the reason\n" +
      "(and next retry time) when the agent is not running.",
    options: {},
  },
  list: {
    synopsis: "list [--all-contexts]",
    summary: "list every agent",
    description:
      "Prints a table of every agent the server knows, sorted by name, with the columns\n" +
      "Agent Name, Status, Port, PID, Health and Restarts. With --all-contexts, asks every\n" +
      "context of the contexts file at once (each within --connect-timeout) and prints one\n" +
      "table with a Context column first; a context that cannot be reached or refuses is\n" +
      "reported on stderr, the others are still shown, and the exit status is then 1.",
    options: { "all-contexts": ALL_CONTEXTS_OPTION },
  },
  watch: {
    synopsis: "watch [name...] [--all-contexts]",
    summary: "print state and health changes until interrupted",
    description:
      "Prints the current state of the agents (all, or the named ones), then one line per\n" +
      "change of state or health: <time> <name> <STATE>/<HEALTH> <reason>. When the\n" +
      "connection drops it reconnects and resumes after the last event it saw; it exits\n" +
      "with status 3 when the server stays unreachable. With --all-contexts, watches every\n" +
      "context at once, each line naming its context after the time; a context that cannot\n" +
      "be reached is reported on stderr while the others go on, and the exit status is 1.",
    options: {
      "all-contexts": ALL_CONTEXTS_OPTION,
      "max-retries": {
        type: "string",
        value: "N",
        help: `reconnection attempts in a row before giving up (default ${DEFAULT_WATCH_RETRIES})`,
      },
    },
  },
  logs: {
    synopsis: "logs <name> [-f] [-n N]",
    summary: "print an agent's recent output (-f follows)",
    description: "Prints the last lines of the agent's stdout and stderr as they were written.",
    options: {
      follow: { type: "boolean", short: "f", help: "keep printing new output until interrupted" },
      lines: {
        type: "string",
        short: "n",
        value: "N",
        help: `how many of the last lines to print first (default ${DEFAULT_LOG_LINES})`,
      },
    },
  },
  install: {
    synopsis: "install <dir|archive> [--force] [--start]",
    summary: "install an agent package on the server (a directory is packed first)",
    description:
      "Uploads an agent package to the server, which checks it, unpacks it into\n" +
      "<state_dir>/packages/<name>/ and provisions it (npm ci, a .venv from requirements.txt).\n" +
      "A directory is packed as .tar.gz, minus .git, node_modules, .venv, __pycache__ and\n" +
      "what its .atollignore lists (gitignore patterns). Installing the same package again\n" +
      "changes nothing. Prints: ✓ Agent <name> installed (sha256 <first 12 digits>…)",
    options: {
      force: { type: "boolean", help: "replace an agent installed from another package" },
      start: {
        type: "boolean",
        help: "start the agent once installed (restart it when its package was replaced)",
      },
      timeout: TIMEOUT_OPTION,
    },
  },
  remove: {
    synopsis: "remove <name>",
    summary: "stop an installed agent and delete its package",
    description:
      "Stops the agent gracefully and deletes its package from the server. Agents of the\n" +
      "server's agents directory cannot be removed. Prints: ✓ Agent <name> removed",
    options: { timeout: TIMEOUT_OPTION },
  },
  shell: {
    synopsis: "shell",
    summary: "interactive command mode",
    description:
      "Reads commands at the `Command Mode> ` prompt: deploy <name>, undeploy <name>,\n" +
      "restart <name>, status <name>, list deployment (or list), logs <name> [-n N], help,\n" +
      "exit (or quit). Tab completes commands and agent names; arrows recall history.",
    options: {},
  },
};

/** The client commands, in help order. */
export const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

function optionRows(options: Readonly<Record<string, OptionSpec>>): string[] {
  return Object.entries(options).map(([name, spec]) => {
    const flag = `${spec.short === undefined ? "" : `-${spec.short}, `}--${name}${
      spec.value === undefined ? "" : ` ${spec.value}`
    }`;
    return `  ${flag.padEnd(26)} ${spec.help}`;
  });
}

/** Width of the synopsis column of `atoll-deploy --help`. */
const COMMAND_COLUMN = 34;

/** `atoll-deploy --help`. */
export function mainUsage(): string {
  const commands = [
    `  ${"serve [flags]".padEnd(COMMAND_COLUMN)} run the deployment server (see atoll-deploy serve --help)`,
    ...COMMAND_NAMES.map(
      (name) => `  ${COMMANDS[name].synopsis.padEnd(COMMAND_COLUMN)} ${COMMANDS[name].summary}`,
    ),
    `  ${"context list|use|add|remove".padEnd(COMMAND_COLUMN)} named servers of the contexts file (see atoll-deploy context --help)`,
    `  ${"render [name...]".padEnd(COMMAND_COLUMN)} print Kubernetes manifests of agents (see atoll-deploy render --help)`,
    `  ${"help [command]".padEnd(COMMAND_COLUMN)} show help for a command`,
  ];
  return [
    "usage: atoll-deploy [options] <command> [arguments]",
    "",
    "Deployment server for ATOLL agents, and its command-line client.",
    "",
    "commands:",
    ...commands,
    "",
    "options (client commands):",
    ...optionRows(GLOBAL_OPTIONS),
    `  ${"--version".padEnd(26)} print the version`,
    "",
    "Exit status: 0 success, 1 the server refused or the operation failed, 2 usage error,",
    "3 server unreachable.",
    "",
  ].join("\n");
}

/** `atoll-deploy <command> --help`. */
export function commandUsage(name: CommandName): string {
  const spec = COMMANDS[name];
  const own = optionRows(spec.options);
  return [
    `usage: atoll-deploy ${spec.synopsis} [options]`,
    "",
    spec.description,
    "",
    ...(own.length === 0 ? [] : ["options:", ...own, ""]),
    "global options:",
    ...optionRows(GLOBAL_OPTIONS),
    "",
  ].join("\n");
}

/** Options of `context add` (the connection options of every client command, as stored). */
export const CONTEXT_ADD_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  server: { type: "string", value: "ADDR", help: "the daemon, host:port or unix:/path (required)" },
  "token-file": GLOBAL_OPTIONS["token-file"] as OptionSpec,
  "tls-ca": GLOBAL_OPTIONS["tls-ca"] as OptionSpec,
  "tls-cert": GLOBAL_OPTIONS["tls-cert"] as OptionSpec,
  "tls-key": GLOBAL_OPTIONS["tls-key"] as OptionSpec,
  json: { type: "boolean", help: "context list: JSON output" },
  help: { type: "boolean", short: "h", help: "show help" },
};

/** `atoll-deploy context --help`. */
export function contextUsage(): string {
  return [
    "usage: atoll-deploy context list | use NAME | add NAME --server ADDR [options] | remove NAME",
    "",
    "Named servers with their credentials, kept in $XDG_CONFIG_HOME/atoll-deploy/contexts.toml",
    "(else ~/.config/atoll-deploy/contexts.toml; written atomically, mode 0600).",
    "",
    "  list                       the contexts, the current one marked with *",
    "  use NAME                   make NAME the current context (used when no --server,",
    "                             --context, ATOLL_DEPLOY_CONTEXT or ATOLL_DEPLOY_SERVER says)",
    "  add NAME --server ADDR     add a context; relative file paths are stored absolute; the",
    "                             first context added becomes the current one",
    "  remove NAME                remove a context (and unset it when it was current)",
    "",
    "options of add:",
    ...optionRows(CONTEXT_ADD_OPTIONS).slice(0, 5),
    "",
    "Every client command takes --context NAME (env ATOLL_DEPLOY_CONTEXT); list and watch take",
    "--all-contexts. Exit status: 0 success, 1 the file could not be changed, 2 usage error.",
    "",
  ].join("\n");
}

/** Options of `render`. */
export const RENDER_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  namespace: {
    type: "string",
    value: "NS",
    help: "metadata.namespace of every object (an agent's [kubernetes].namespace wins; default: none, kubectl's)",
  },
  image: {
    type: "string",
    value: "IMAGE",
    help: "container image (an agent's [kubernetes].image wins; default atoll-agent:<version>)",
  },
  "agents-dir": {
    type: "string",
    value: "DIR",
    help: "agents directory (env ATOLL_DEPLOY_AGENTS_DIRECTORY; default ./atoll_agents)",
  },
  help: { type: "boolean", short: "h", help: "show help" },
};

/** `atoll-deploy render --help`. */
export function renderUsage(): string {
  return [
    "usage: atoll-deploy render [name...] [options]",
    "",
    "Prints Kubernetes manifests (YAML documents separated by ---) for the named agents, or",
    "every valid agent when none is named: per agent a ConfigMap holding the definition, a",
    "Deployment (one replica, strategy Recreate) and a Service, all named atoll-<name>.",
    "A definition a cluster cannot run faithfully (auto_restart = false, say) is refused with",
    "the file and key; render then prints nothing and exits 1 (docs/kubernetes.md).",
    "",
    "  kubectl apply -f <(atoll-deploy render)",
    "",
    "options:",
    ...optionRows(RENDER_OPTIONS),
    "",
  ].join("\n");
}
