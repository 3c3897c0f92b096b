/**
 * `watch [name...]`: prints the agents' current state, then one line per change, until
 * interrupted. A dropped stream (server restart, network break, a watcher ended as too slow,
 * or silence longer than WATCH_IDLE_TIMEOUT_MS despite the server's heartbeats) is resumed
 * on a fresh channel with `resume_after_revision` set to the last revision seen, so no change
 * is lost; when the server can no longer replay that far it sends a fresh snapshot, and only
 * the agents whose state differs from what was last printed are printed again.
 *
 * Revisions count from 1 again when the server restarts, so a revision from before is
 * meaningless to the new process: after the server was unreachable or announced its shutdown,
 * and whenever a snapshot or heartbeat shows a revision below the one held, the watch resumes
 * from a fresh snapshot instead (again printing only real differences).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { Agent } from "../../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  WatchEventType,
  type WatchHealthResponse,
  WatchHealthResponseSchema,
} from "../../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { RpcError } from "../../rpc/grpc-client.ts";
import type { DeploymentClient } from "../connection.ts";
import { type CommandContext, EXIT, reportFailure } from "../context.ts";
import { failureLine, formatReason, formatWatchEvent, jsonLine, messageJson } from "../format.ts";

/** Silence (no event, not even a heartbeat) after which the stream is taken as dead. */
export const WATCH_IDLE_TIMEOUT_MS = 60_000;
/** First delay before reconnecting; doubles per failed attempt up to WATCH_MAX_RETRY_DELAY_MS. */
export const WATCH_FIRST_RETRY_DELAY_MS = 250;
export const WATCH_MAX_RETRY_DELAY_MS = 5_000;

/** Delay before reconnection attempt `attempt` (1-based). */
export function retryDelayMs(attempt: number): number {
  return Math.min(WATCH_FIRST_RETRY_DELAY_MS * 2 ** (attempt - 1), WATCH_MAX_RETRY_DELAY_MS);
}

/** Failures after which reconnecting is pointless: the request itself was refused. */
function isRetryable(error: unknown): boolean {
  if (!(error instanceof RpcError)) return false;
  switch (error.code) {
    case grpcStatus.UNAVAILABLE:
    // Not cancelled by us (the caller checks that first): the server or a proxy reset the
    // stream, as grpc-js does for open calls when a server is shut down forcefully.
    case grpcStatus.CANCELLED:
    case grpcStatus.UNKNOWN:
    case grpcStatus.INTERNAL:
    case grpcStatus.DEADLINE_EXCEEDED:
      return true;
    case grpcStatus.RESOURCE_EXHAUSTED:
      // WATCHER_TOO_SLOW asks the client to resume; TOO_MANY_WATCHERS may clear up.
      return error.reason === "WATCHER_TOO_SLOW" || error.reason === "TOO_MANY_WATCHERS";
    default:
      return false;
  }
}

/** What was last printed for an agent, to tell a real change after a fresh snapshot. */
type Seen = string;

function seenKey(agent: Agent): Seen {
  return `${agent.state}/${agent.health}/${formatReason(agent)}`;
}

class WatchPrinter {
  readonly #ctx: CommandContext;
  readonly #context: string | undefined;
  readonly #seen = new Map<string, Seen>();
  #snapshotNames: Set<string> | undefined;
  /** Highest revision seen; the resume point. */
  revision = 0n;

  constructor(ctx: CommandContext, context: string | undefined) {
    this.#ctx = ctx;
    this.#context = context;
  }

  #lineOptions() {
    const style = this.#ctx.out.style;
    return this.#context === undefined ? { style } : { style, context: this.#context };
  }

  /** Resume with a fresh snapshot next time: the revision may belong to an earlier server. */
  forgetRevision(): void {
    this.revision = 0n;
  }

  /**
   * Prints one event. Returns "history-reset" when the event shows that the server's
   * revisions went backwards (it restarted since the revision we hold): the caller then
   * reconnects for a fresh snapshot.
   */
  handle(event: WatchHealthResponse): "ok" | "history-reset" {
    const { out } = this.#ctx;
    const isChange = event.type === WatchEventType.CHANGE || event.type === WatchEventType.REMOVED;
    if (!isChange && event.revision < this.revision) return "history-reset";
    // A replayed change at or below the resume point was printed before the drop.
    if (isChange && event.revision <= this.revision) return "ok";
    if (event.revision > this.revision) this.revision = event.revision;
    if (event.type === WatchEventType.HEARTBEAT) return "ok";
    if (out.json) {
      const json = messageJson(WatchHealthResponseSchema, event) as Record<string, unknown>;
      out.stdout.write(
        jsonLine(this.#context === undefined ? json : { context: this.#context, ...json }),
      );
      return "ok";
    }
    const agent = event.agent;
    switch (event.type) {
      case WatchEventType.SNAPSHOT: {
        if (agent === undefined) return "ok";
        this.#snapshotNames ??= new Set();
        this.#snapshotNames.add(agent.name);
        // After a reconnection the snapshot repeats agents that did not change: skip those.
        if (this.#seen.get(agent.name) === seenKey(agent)) return "ok";
        this.#seen.set(agent.name, seenKey(agent));
        break;
      }
      case WatchEventType.SNAPSHOT_COMPLETE: {
        // Agents printed before but absent from a fresh snapshot went away meanwhile.
        const present = this.#snapshotNames ?? new Set<string>();
        for (const name of [...this.#seen.keys()]) {
          if (present.has(name)) continue;
          this.#seen.delete(name);
          out.stdout.write(
            `${formatWatchEvent(removedEvent(name, event), this.#ctx.now(), this.#lineOptions())}\n`,
          );
        }
        this.#snapshotNames = undefined;
        return "ok";
      }
      case WatchEventType.CHANGE:
        if (agent !== undefined) this.#seen.set(agent.name, seenKey(agent));
        break;
      case WatchEventType.REMOVED:
        if (agent !== undefined) this.#seen.delete(agent.name);
        break;
      default:
        return "ok";
    }
    const line = formatWatchEvent(event, this.#ctx.now(), this.#lineOptions());
    if (line !== undefined) out.stdout.write(`${line}\n`);
    return "ok";
  }
}

function removedEvent(name: string, at: WatchHealthResponse): WatchHealthResponse {
  return {
    ...at,
    type: WatchEventType.REMOVED,
    agent: { name } as Agent,
  };
}

type AttemptEnd =
  | { readonly kind: "interrupted" }
  | {
      readonly kind: "dropped";
      readonly why: string;
      readonly error?: unknown;
      /** The server went away or restarted: resume from a fresh snapshot. */
      readonly fresh: boolean;
    }
  | { readonly kind: "fatal"; readonly error: unknown; readonly phase: "connect" | "operation" };

/**
 * One connection: check the server answers within the connect timeout (ListAgents), then read
 * the stream until it ends, breaks, goes silent, or the user interrupts.
 */
async function attempt(
  ctx: CommandContext,
  client: DeploymentClient,
  names: readonly string[],
  printer: WatchPrinter,
  hooks: { readonly onConnected: () => void; readonly onEvent: () => void },
): Promise<AttemptEnd> {
  const { metadata } = ctx.connection;
  try {
    await client.listAgents(
      {},
      { signal: ctx.signal, metadata, deadlineMs: ctx.options.connectTimeoutMs },
    );
  } catch (error) {
    if (ctx.signal.aborted) return { kind: "interrupted" };
    if (isRetryable(error)) {
      return { kind: "dropped", why: "cannot reach the server", error, fresh: true };
    }
    return { kind: "fatal", error, phase: "connect" };
  }
  hooks.onConnected();
  const idle = new AbortController();
  let idleTimer = setTimeout(() => idle.abort(), WATCH_IDLE_TIMEOUT_MS);
  const signal = AbortSignal.any([ctx.signal, idle.signal]);
  try {
    const stream = client.watchHealth(
      { names: [...names], resumeAfterRevision: printer.revision },
      { signal, metadata },
    );
    for await (const event of stream) {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(() => idle.abort(), WATCH_IDLE_TIMEOUT_MS);
      hooks.onEvent();
      if (printer.handle(event) === "history-reset") {
        return { kind: "dropped", why: "the server restarted", fresh: true };
      }
    }
    return { kind: "dropped", why: "the server ended the stream", fresh: false };
  } catch (error) {
    if (ctx.signal.aborted) return { kind: "interrupted" };
    if (idle.signal.aborted) {
      return {
        kind: "dropped",
        why: `no event for ${WATCH_IDLE_TIMEOUT_MS / 1000} s`,
        fresh: false,
      };
    }
    if (isRetryable(error)) {
      const why = error instanceof RpcError ? error.details : String(error);
      // A draining server will come back (if at all) with a new event history.
      const fresh = error instanceof RpcError && error.reason === "SERVER_SHUTTING_DOWN";
      return { kind: "dropped", why, error, fresh };
    }
    return { kind: "fatal", error, phase: "operation" };
  } finally {
    clearTimeout(idleTimer);
  }
}

/**
 * Runs the watch; returns 0 when interrupted, 1 when the server refuses it (unknown agent, bad
 * token), 3 when it cannot be reached at first or after `maxRetries` reconnections in a row.
 */
export async function watch(
  ctx: CommandContext,
  names: readonly string[],
  maxRetries: number,
  /** `watch --all-contexts`: the context name printed on every line (and in JSON). */
  label?: string,
): Promise<number> {
  const printer = new WatchPrinter(ctx, label);
  const agent = names.length === 1 ? names[0] : undefined;
  let client = ctx.client;
  let failures = 0;
  let connectedOnce = false;
  try {
    for (;;) {
      const end = await attempt(ctx, client, names, printer, {
        onConnected: () => {
          connectedOnce = true;
        },
        onEvent: () => {
          failures = 0;
        },
      });
      if (end.kind === "interrupted") return EXIT.OK;
      if (end.kind === "fatal") return reportFailure(ctx, end.error, agent, end.phase);
      if (!connectedOnce) {
        // Never reached: answer at once like every other command.
        return reportFailure(ctx, end.error ?? new Error(end.why), agent, "connect");
      }
      failures += 1;
      if (failures > maxRetries) {
        const cause = `${end.why}; gave up after ${maxRetries} reconnection attempts`;
        ctx.out.stderr.write(
          `${failureLine(undefined, `cannot reach atoll-deploy at ${ctx.connection.address}: ${cause}`, ctx.out.errorStyle)}\n`,
        );
        return EXIT.UNREACHABLE;
      }
      if (end.fresh) printer.forgetRevision();
      const delayMs = retryDelayMs(failures);
      ctx.out.stderr.write(
        `${ctx.out.errorStyle.yellow("!")} watch: ${end.why}; reconnecting in ${delayMs} ms (attempt ${failures} of ${maxRetries}, ${printer.revision === 0n ? "from a fresh snapshot" : `resuming after revision ${printer.revision}`})\n`,
      );
      try {
        await sleep(delayMs, undefined, { signal: ctx.signal });
      } catch {
        // Aborted by an interrupt while waiting: the normal way out.
        return EXIT.OK;
      }
      // A fresh channel: the old one may sit in its reconnection backoff.
      if (client !== ctx.client) client.close();
      client = ctx.connection.newClient();
    }
  } finally {
    if (client !== ctx.client) client.close();
  }
}
