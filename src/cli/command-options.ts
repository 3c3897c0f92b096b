/**
 * What the `atoll-deploy` command line can say: the options and commands, with their help lines
 * (one table, so help and parsing cannot drift apart).
 */
import {
  type CommandName,
  DEFAULT_CONNECT_TIMEOUT_S,
  DEFAULT_LOG_LINES,
  DEFAULT_SERVER,
  DEFAULT_WATCH_RETRIES,
} from "./command-spec.ts";

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
