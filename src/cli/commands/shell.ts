/**
 * `shell`: the interactive `Command Mode> ` prompt (SPEC §7). Each line is one command run
 * exactly as on the command line (same output, same error lines); a failing command prints its
 * error and the prompt comes back. History (arrows) and tab completion of commands and agent
 * names (refreshed by ListAgents after every command) come from node:readline when the input
 * is a terminal; piped input works line by line without them.
 */
import * as readline from "node:readline";
import { runInBackground } from "../../core/background-task.ts";
import { parseShellCommand } from "../command-line.ts";
import { type CommandContext, callOptions, EXIT, reportFailure } from "../context.ts";
import { runCommand } from "../dispatch.ts";
import { failureLine } from "../format.ts";

export const SHELL_PROMPT = "Command Mode> ";

/** Words the shell understands, for completion. */
export const SHELL_COMMANDS = [
  "deploy",
  "undeploy",
  "restart",
  "status",
  "list",
  "logs",
  "help",
  "exit",
  "quit",
] as const;

/** Commands whose argument is an agent name. */
const NAME_COMMANDS: ReadonlySet<string> = new Set([
  "deploy",
  "undeploy",
  "restart",
  "status",
  "logs",
]);

export const SHELL_HELP = `Commands:
  deploy <name>        start an agent and wait until it is running and healthy
  undeploy <name>      stop an agent
  restart <name>       stop an agent if it runs, then start it again
  status <name>        show an agent's full status
  list deployment      list every agent (also: list)
  logs <name> [-n N]   show an agent's recent output
  help                 show this help
  exit                 leave the shell (also: quit, Ctrl-D)
Tab completes commands and agent names; Ctrl-C cancels a running command.
`;

/**
 * Completion of a partial line: the command word first, then an agent name for commands that
 * take one (`deploy gr` → `greeter`), `deployment` after `list`. Returns readline's
 * `[candidates, the fragment being completed]`.
 */
export function completeShellLine(line: string, agentNames: readonly string[]): [string[], string] {
  const words = line.trimStart().split(/\s+/);
  const current = words[words.length - 1] ?? "";
  // A single candidate completes with a space after it, ready for the next word.
  const finish = (hits: string[]): string[] => (hits.length === 1 ? [`${hits[0]} `] : hits);
  if (words.length <= 1) {
    const hits = SHELL_COMMANDS.filter((c) => c.startsWith(current));
    return [hits.length > 0 ? finish(hits) : [...SHELL_COMMANDS], current];
  }
  if (words.length !== 2) return [[], current];
  const command = words[0] ?? "";
  const candidates = NAME_COMMANDS.has(command)
    ? agentNames
    : command === "list"
      ? ["deployment"]
      : [];
  return [finish(candidates.filter((c) => c.startsWith(current))), current];
}

export interface ShellIo {
  readonly input: NodeJS.ReadableStream & { readonly isTTY?: boolean };
  readonly output: NodeJS.WritableStream & { readonly isTTY?: boolean };
}

/** Splits a typed line into words (whitespace separated; no quoting: names have no spaces). */
function words(line: string): string[] {
  return line
    .trim()
    .split(/\s+/)
    .filter((w) => w !== "");
}

/** Runs the shell until `exit`, `quit`, end of input or an interrupt; exit status 0. */
export async function shell(ctx: CommandContext, io: ShellIo): Promise<number> {
  const terminal = io.input.isTTY === true && io.output.isTTY === true;
  let agentNames: string[] = [];
  const background = new AbortController();
  const fetchNames = async (): Promise<string[]> => {
    const response = await ctx.client.listAgents(
      {},
      {
        ...callOptions(ctx, ctx.options.connectTimeoutMs),
        signal: AbortSignal.any([ctx.signal, background.signal]),
      },
    );
    return response.agents.map((a) => a.name);
  };
  /** At start-up, in a terminal: a server that cannot be reached is reported before the prompt. */
  const checkServer = async (): Promise<void> => {
    try {
      agentNames = await fetchNames();
    } catch (error) {
      const cancelled = background.signal.aborted || ctx.signal.aborted;
      if (!cancelled) reportFailure(ctx, error, undefined, "connect");
    }
  };
  /** After a command, without holding up the prompt. */
  const refreshNames = (): void =>
    runInBackground(
      {
        // The completions stay as they were: the command just run has reported a server it
        // could not reach already, and the next command will again.
        onFailure: () => {},
      },
      "refresh agent names",
      fetchNames,
      (names) => {
        agentNames = names;
      },
    );

  const rl = readline.createInterface({
    input: io.input,
    output: io.output,
    prompt: SHELL_PROMPT,
    terminal,
    historySize: 1000,
    removeHistoryDuplicates: true,
    completer: (line: string) => completeShellLine(line, agentNames),
  });
  // Take lines from now on: a line entered while the start-up check runs must not be lost.
  const lines = rl[Symbol.asyncIterator]();
  let running: AbortController | undefined;
  rl.on("SIGINT", () => {
    // Terminal mode: Ctrl-C reaches readline, not the process. Cancel the running command,
    // or discard the line being typed.
    if (running !== undefined) {
      running.abort();
      return;
    }
    rl.write(null, { ctrl: true, name: "e" });
    rl.write(null, { ctrl: true, name: "u" });
    io.output.write("^C\n");
    rl.prompt();
  });
  const onInterrupt = (): void => {
    running?.abort();
    rl.close();
  };
  ctx.signal.addEventListener("abort", onInterrupt, { once: true });

  let leftByCommand = false;
  let closed = false;
  rl.once("close", () => {
    closed = true;
  });
  // Piped input can end (closing readline) while its last lines still wait to run; they get
  // their prompt all the same so the transcript reads the same either way.
  const prompt = (): void => {
    if (!closed) rl.prompt();
    else if (!terminal) io.output.write(SHELL_PROMPT);
  };
  try {
    if (terminal) {
      // After readline has the terminal in raw mode, so an early Ctrl-C reaches its handler.
      await checkServer();
      io.output.write(
        `atoll-deploy shell on ${ctx.connection.address}. Type help for the commands, exit to leave.\n`,
      );
    }
    prompt();
    for (;;) {
      const next = await lines.next();
      if (next.done === true) break;
      const typed = words(next.value);
      const [word] = typed;
      if (word === undefined) {
        prompt();
        continue;
      }
      if (word === "exit" || word === "quit") {
        leftByCommand = true;
        break;
      }
      if (word === "help" || word === "?") {
        io.output.write(SHELL_HELP);
        prompt();
        continue;
      }
      const parsed = parseShellCommand(typed);
      if ("error" in parsed) {
        const hint = parsed.error.startsWith("unknown") ? " (type help for the commands)" : "";
        ctx.out.stderr.write(
          `${failureLine(undefined, parsed.error + hint, ctx.out.errorStyle)}\n`,
        );
      } else if (parsed.command.name !== "shell") {
        running = new AbortController();
        const signal = AbortSignal.any([ctx.signal, running.signal]);
        try {
          await runCommand({ ...ctx, signal }, parsed.command);
        } finally {
          running = undefined;
        }
        refreshNames();
      }
      // Piped input may have ended (and closed readline) already: its buffered lines still run.
      if (ctx.signal.aborted) break;
      prompt();
    }
  } finally {
    ctx.signal.removeEventListener("abort", onInterrupt);
    background.abort();
    rl.close();
  }
  // Leave the cursor on a fresh line after Ctrl-D or the end of piped input.
  if (!leftByCommand) io.output.write("\n");
  return EXIT.OK;
}
