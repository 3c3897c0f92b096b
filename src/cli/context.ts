/**
 * What every client command gets: the client, where it points, the output streams with their
 * styles, the interrupt signal, and the one place that turns a failure into the error line and
 * exit status of SPEC §7.
 */
import { status } from "@grpc/grpc-js";
import type { ClientCallOptions } from "../rpc/grpc-client.ts";
import { RpcError } from "../rpc/grpc-client.ts";
import type { ClientOptions } from "./command-line.ts";
import type { Connection, DeploymentClient } from "./connection.ts";
import { failureLine } from "./format.ts";
import type { Style } from "./style.ts";

/** Exit statuses of the CLI. */
export const EXIT = {
  OK: 0,
  /** The server refused the request or the operation failed. */
  FAILED: 1,
  /** Unknown command or option, missing argument, unusable local file. */
  USAGE: 2,
  /** The server could not be reached (UNAVAILABLE, or no answer within the connect timeout). */
  UNREACHABLE: 3,
  /** Interrupted (SIGINT/SIGTERM) while an operation was waiting. */
  INTERRUPTED: 130,
} as const;

/** A stream the CLI writes text to (`process.stdout` or a test's capture). */
export interface TextSink {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface Output {
  readonly stdout: TextSink;
  readonly stderr: TextSink;
  /** Styles for stdout and for stderr (each coloured only when that stream may be). */
  readonly style: Style;
  readonly errorStyle: Style;
  /** `--json`: machine-readable output on stdout. */
  readonly json: boolean;
  /** Show a progress indicator on stderr while waiting (stderr is a TTY). */
  readonly progress: boolean;
}

export interface CommandContext {
  /** The client of this command; the caller closes it. */
  readonly client: DeploymentClient;
  readonly connection: Connection;
  readonly options: ClientOptions;
  readonly out: Output;
  /** Aborted on interrupt (SIGINT/SIGTERM, or Ctrl-C in the shell). */
  readonly signal: AbortSignal;
  /** Wall clock, milliseconds since the epoch. */
  readonly now: () => number;
}

/** Call options carrying the context's headers and interrupt signal, with an optional deadline. */
export function callOptions(ctx: CommandContext, deadlineMs?: number): ClientCallOptions {
  return {
    signal: ctx.signal,
    metadata: ctx.connection.metadata,
    ...(deadlineMs !== undefined && { deadlineMs }),
  };
}

/**
 * Which step failed: reaching the server (a deadline then means it is unreachable), or an
 * operation the server accepted (a deadline then is the operation's `--timeout`).
 */
export type Phase = "connect" | "operation";

export interface Failure {
  readonly line: string;
  readonly exitCode: number;
}

/** grpc-js prefixes connection errors with its own boilerplate; keep the cause. */
function connectionCause(details: string): string {
  const cause = details
    .replace(/^No connection established\.\s*Last error:\s*/i, "")
    .replace(/^Error:\s*/, "")
    .replace(/\.?\s*Resolution note:\s*$/, "")
    .replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)\s*$/, "")
    .trim();
  return cause === "" ? details : cause;
}

/**
 * The error line and exit status for anything a command failed with:
 * - UNAVAILABLE (other than a draining server), or DEADLINE_EXCEEDED while connecting →
 *   `✗ cannot reach atoll-deploy at <address>: <cause>`, status 3;
 * - UNAVAILABLE with reason SERVER_SHUTTING_DOWN → `✗ Agent <name>: <message> (SERVER_SHUTTING_DOWN)`, 3;
 * - CANCELLED after an interrupt → `✗ Agent <name>: interrupted ...`, 130;
 * - any other status → `✗ Agent <name>: <message> (<ErrorInfo reason or status name>)`, 1;
 * - a non-RPC error → `✗ Agent <name>: <message>`, 1.
 * Without an agent the `Agent <name>: ` part is left out.
 */
export function describeFailure(
  error: unknown,
  at: {
    readonly agent?: string | undefined;
    readonly address: string;
    readonly phase: Phase;
    readonly connectTimeoutMs: number;
    readonly interrupted: boolean;
    readonly style: Style;
  },
): Failure {
  const { agent, style } = at;
  const rpc = error instanceof RpcError ? error : undefined;
  if (rpc === undefined) {
    const message = error instanceof Error ? error.message : String(error);
    return { line: failureLine(agent, message, style), exitCode: EXIT.FAILED };
  }
  if (rpc.code === status.CANCELLED && at.interrupted) {
    const note =
      at.phase === "operation"
        ? "interrupted (the server may still finish the operation)"
        : "interrupted";
    return { line: failureLine(agent, note, style), exitCode: EXIT.INTERRUPTED };
  }
  const unreachable = (cause: string): Failure => ({
    line: failureLine(undefined, `cannot reach atoll-deploy at ${at.address}: ${cause}`, style),
    exitCode: EXIT.UNREACHABLE,
  });
  if (rpc.code === status.UNAVAILABLE && rpc.reason === undefined) {
    return unreachable(connectionCause(rpc.details));
  }
  if (rpc.code === status.DEADLINE_EXCEEDED && rpc.reason === undefined && at.phase === "connect") {
    return unreachable(`no answer within ${at.connectTimeoutMs / 1000} s`);
  }
  const tag = rpc.reason ?? status[rpc.code] ?? String(rpc.code);
  const message =
    rpc.code === status.DEADLINE_EXCEEDED && rpc.reason === undefined
      ? "no result before --timeout (the server may still finish the operation)"
      : rpc.details;
  return {
    line: failureLine(agent, `${message} (${tag})`, style),
    exitCode: rpc.code === status.UNAVAILABLE ? EXIT.UNREACHABLE : EXIT.FAILED,
  };
}

/** Writes the failure line of `error` to stderr and returns the exit status. */
export function reportFailure(
  ctx: CommandContext,
  error: unknown,
  agent: string | undefined,
  phase: Phase,
): number {
  const failure = describeFailure(error, {
    agent,
    address: ctx.connection.address,
    phase,
    connectTimeoutMs: ctx.options.connectTimeoutMs,
    interrupted: ctx.signal.aborted,
    style: ctx.out.errorStyle,
  });
  ctx.out.stderr.write(`${failure.line}\n`);
  return failure.exitCode;
}
