/**
 * Runs a parsed command line other than `serve`: help, version, usage errors, and the client
 * commands (connection set-up, output streams and styles, the command, closing the client).
 * Everything it touches comes in through `CliIo`, so tests can run it in-process.
 */
import os from "node:os";
import { packageVersion } from "../platform/package-version.ts";
import {
  type ContextsFile,
  ContextsFileError,
  contextsFilePath,
  loadContextsFile,
} from "./client-contexts.ts";
import type { ClientCommand, ClientOptions, CommandLine } from "./command-line.ts";
import { listAllContexts, watchAllContexts } from "./commands/all-contexts.ts";
import { contextCommand } from "./commands/context.ts";
import { renderCommand } from "./commands/render.ts";
import { shell } from "./commands/shell.ts";
import { LocalFileError, openConnection } from "./connection.ts";
import { type CommandContext, EXIT, type Output } from "./context.ts";
import {
  needsContextsFile,
  resolveClientOptions,
  UnknownContextError,
} from "./context-resolution.ts";
import { runCommand } from "./dispatch.ts";
import { failureLine } from "./format.ts";
import { COLOR_STYLE, colorEnabled, PLAIN_STYLE } from "./style.ts";

export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: NodeJS.ReadableStream & { readonly isTTY?: boolean };
  readonly stdout: NodeJS.WritableStream & { readonly isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { readonly isTTY?: boolean };
  /** Aborted on SIGINT/SIGTERM: commands cancel their calls and return. */
  readonly signal: AbortSignal;
  /** Wall clock in milliseconds (default Date.now). */
  readonly now?: () => number;
  /** Working directory for relative paths (`render`'s agents directory, `context add`'s files). */
  readonly cwd: string;
}

function homeDir(io: CliIo): string {
  return io.env.HOME ?? os.homedir();
}

function output(options: ClientOptions, io: CliIo): Output {
  return {
    stdout: io.stdout,
    stderr: io.stderr,
    style: colorEnabled(io.stdout, io.env, options.noColor) ? COLOR_STYLE : PLAIN_STYLE,
    errorStyle: colorEnabled(io.stderr, io.env, options.noColor) ? COLOR_STYLE : PLAIN_STYLE,
    json: options.json,
    progress: io.stderr.isTTY === true,
  };
}

async function runClient(
  command: ClientCommand,
  parsed: ClientOptions,
  io: CliIo,
): Promise<number> {
  const out = output(parsed, io);
  const usageFailure = (message: string): number => {
    io.stderr.write(`${failureLine(undefined, message, out.errorStyle)}\n`);
    return EXIT.USAGE;
  };
  const allContexts = (command.name === "list" || command.name === "watch") && command.allContexts;
  let file: ContextsFile | undefined;
  if (allContexts || needsContextsFile(parsed)) {
    try {
      file = await loadContextsFile(contextsFilePath(io.env, homeDir(io)), homeDir(io));
    } catch (error) {
      if (error instanceof ContextsFileError) return usageFailure(error.message);
      throw error;
    }
  }
  if (allContexts && file !== undefined) {
    if (file.contexts.length === 0) {
      return usageFailure(
        `--all-contexts: no contexts in ${file.path}; add one with atoll-deploy context add`,
      );
    }
    const run = {
      contexts: file.contexts,
      options: parsed,
      out,
      signal: io.signal,
      now: io.now ?? Date.now,
    };
    return command.name === "watch"
      ? watchAllContexts(run, command.agents, command.maxRetries)
      : listAllContexts(run);
  }
  let options: ClientOptions;
  try {
    options = resolveClientOptions(parsed, file);
  } catch (error) {
    if (error instanceof UnknownContextError) return usageFailure(error.message);
    throw error;
  }
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    return usageFailure("--tls-cert and --tls-key go together");
  }
  let connection: Awaited<ReturnType<typeof openConnection>>;
  try {
    connection = await openConnection(options);
  } catch (error) {
    if (!(error instanceof LocalFileError)) throw error;
    io.stderr.write(`${failureLine(undefined, error.message, out.errorStyle)}\n`);
    return EXIT.USAGE;
  }
  const client = connection.newClient();
  const ctx: CommandContext = {
    client,
    connection,
    options,
    out,
    signal: io.signal,
    now: io.now ?? Date.now,
  };
  try {
    if (command.name === "shell") return await shell(ctx, { input: io.stdin, output: io.stdout });
    return await runCommand(ctx, command);
  } finally {
    client.close();
  }
}

/** Runs `line` (anything but `serve`); resolves with the exit status. */
export async function runCli(
  line: Exclude<CommandLine, { readonly kind: "serve" }>,
  io: CliIo,
): Promise<number> {
  switch (line.kind) {
    case "help":
      io.stdout.write(line.text);
      return EXIT.OK;
    case "version":
      io.stdout.write(`${packageVersion()}\n`);
      return EXIT.OK;
    case "usage-error": {
      const synopsis = line.usage.split("\n")[0] ?? "";
      io.stderr.write(
        `atoll-deploy: ${line.message}\n${synopsis}\nRun 'atoll-deploy --help' (or '<command> --help') for more.\n`,
      );
      return EXIT.USAGE;
    }
    case "client":
      return runClient(line.command, line.options, io);
    case "context":
      return contextCommand(line.command, {
        file: contextsFilePath(io.env, homeDir(io)),
        homeDir: homeDir(io),
        cwd: io.cwd,
        stdout: io.stdout,
        stderr: io.stderr,
        style: colorEnabled(io.stdout, io.env, false) ? COLOR_STYLE : PLAIN_STYLE,
        errorStyle: colorEnabled(io.stderr, io.env, false) ? COLOR_STYLE : PLAIN_STYLE,
      });
    case "render":
      return renderCommand(line.command, {
        cwd: io.cwd,
        stdout: io.stdout,
        stderr: io.stderr,
        version: packageVersion(),
        errorStyle: colorEnabled(io.stderr, io.env, false) ? COLOR_STYLE : PLAIN_STYLE,
      });
  }
}
