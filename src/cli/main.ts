/**
 * Composition root of the `atoll-deploy` executable: the only module that reads
 * `process.argv`, installs signal handlers, or ends the process. `serve` goes to the daemon
 * (`serve.ts`); everything else to the client CLI (`cli.ts`).
 */
import { parseCommandLine } from "./command-line.ts";
import { installCrashGuard } from "./crash-guard.ts";

const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"];
/** `serve` also takes SIGUSR2: detach, leaving the agents running (docs/operations.md). */
const SERVE_SIGNALS: readonly NodeJS.Signals[] = [...SHUTDOWN_SIGNALS, "SIGUSR2"];

/** After an error nothing caught, the daemon detaches; it ends within this whatever happens. */
const FATAL_EXIT_DEADLINE_MS = 15_000;

/** How long to wait after the exit status is set before ending a process kept alive by handles. */
const EXIT_GRACE_MS = 2_000;

/**
 * Installs SIGTERM/SIGINT/SIGUSR2 handlers at once (so a signal during the daemon's start-up is
 * not lost; without a handler SIGUSR2 would end the process without saving state) and hands
 * them to `runServe`: the promise resolves with the first signal, whenever it came; `onSecond`
 * runs for every later one.
 */
function serveSignals(): (onSecond: () => void) => Promise<NodeJS.Signals> {
  let first: NodeJS.Signals | undefined;
  let extra = 0;
  let resolveFirst: ((signal: NodeJS.Signals) => void) | undefined;
  let second: (() => void) | undefined;
  const handler = (signal: NodeJS.Signals): void => {
    if (first === undefined) {
      first = signal;
      resolveFirst?.(signal);
    } else if (second !== undefined) {
      second();
    } else {
      extra += 1;
    }
  };
  for (const signal of SERVE_SIGNALS) process.on(signal, handler);
  return (onSecond) => {
    second = onSecond;
    for (; extra > 0; extra -= 1) onSecond();
    if (first !== undefined) return Promise.resolve(first);
    return new Promise((resolve) => {
      resolveFirst = resolve;
    });
  };
}

/**
 * For client commands: the first SIGTERM/SIGINT aborts the returned signal (calls are cancelled
 * and the command returns); a second one ends the process at once with status 130.
 */
function clientInterrupt(): AbortSignal {
  const controller = new AbortController();
  const handler = (): void => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  for (const signal of SHUTDOWN_SIGNALS) process.on(signal, handler);
  return controller.signal;
}

/** `atoll-deploy watch | head` closes the pipe early: that is the end, not a crash. */
function exitQuietlyOnBrokenPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
}

async function main(): Promise<number> {
  exitQuietlyOnBrokenPipe();
  const line = parseCommandLine(process.argv.slice(2), process.env);
  if (line.kind === "serve") {
    const shutdownSignals = serveSignals();
    const guard = installCrashGuard(process, {
      deadlineMs: FATAL_EXIT_DEADLINE_MS,
      exit: (code) => process.exit(code),
    });
    // Loaded only for `serve`: the daemon's modules would slow every client command's start.
    const { runServe } = await import("./serve.ts");
    return runServe({
      argv: line.argv,
      env: process.env,
      cwd: process.cwd(),
      stdout: process.stdout,
      stderr: process.stderr,
      shutdownSignals,
      fatalErrors: (handler) => guard.onFatal(handler),
    });
  }
  // The CLI's stderr is for its own one-line messages (scripts read them); grpc-js's TLS to an
  // IP address trips a Node deprecation warning (DEP0123) that would land there.
  process.noDeprecation = true;
  // Loaded only for client commands: the daemon would carry the client CLI (readline, the
  // shell, formatting) for nothing.
  const { runCli } = await import("./cli.ts");
  return runCli(line, {
    env: process.env,
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    signal: clientInterrupt(),
    cwd: process.cwd(),
  });
}

function finish(code: number): void {
  process.exitCode = code;
  // Let Node exit by itself once output is flushed; if some handle keeps it alive, end it.
  setTimeout(() => process.exit(code), EXIT_GRACE_MS).unref();
}

main().then(finish, (error: unknown) => {
  process.stderr.write(
    `atoll-deploy: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  finish(1);
});
