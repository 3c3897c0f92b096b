/**
 * The help texts of `atoll-deploy`, built from the option and command tables of
 * `command-options.ts`.
 */

import {
  COMMAND_NAMES,
  COMMANDS,
  CONTEXT_ADD_OPTIONS,
  GLOBAL_OPTIONS,
  type OptionSpec,
  RENDER_OPTIONS,
} from "./command-options.ts";
import type { CommandName } from "./command-spec.ts";

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
