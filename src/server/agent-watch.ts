/**
 * `DeploymentServer.watch()`: the `WatchHealth` stream of SPEC §6 in process, as domain objects.
 * The same contract as the RPC (src/rpc/deployment-service.ts): first the current status of
 * each selected agent, then a SNAPSHOT_COMPLETE marker, then every change with a monotonic
 * revision; a resume after a known revision replays what was missed instead; a consumer too
 * slow to keep up is ended with `WATCHER_TOO_SLOW` rather than growing memory. No heartbeats:
 * there is no connection to keep alive.
 */
import type { AgentBackend } from "../core/agent-backend.ts";
import type { AgentStateName, HealthName } from "../core/agent-state.ts";
import type { AgentChange, AgentStatus } from "../core/agent-status.ts";
import { DeployError } from "../core/errors.ts";
import { WatchQueue } from "../rpc/watch-queue.ts";

/** One event of {@link DeploymentServer.watch}; `type` is the short name of the proto `WatchEventType`. */
export type WatchEvent =
  | {
      /** The current status of one selected agent, at the start of the stream. */
      readonly type: "SNAPSHOT";
      /** The latest revision when the snapshot was taken. */
      readonly revision: number;
      /** When the snapshot was taken, ms since the epoch. */
      readonly atMs: number;
      readonly agent: AgentStatus;
    }
  | {
      /** Every SNAPSHOT event has been delivered; changes follow. */
      readonly type: "SNAPSHOT_COMPLETE";
      readonly revision: number;
      readonly atMs: number;
    }
  | {
      /** CHANGE: the agent's state or health changed. REMOVED: it is no longer known (its last status). */
      readonly type: "CHANGE" | "REMOVED";
      /** The revision of this change: monotonic across the server and its restarts. */
      readonly revision: number;
      /** When the change happened, ms since the epoch. */
      readonly atMs: number;
      readonly agent: AgentStatus;
      readonly previousState: AgentStateName;
      readonly previousHealth: HealthName;
    };

/** Options of {@link DeploymentServer.watch}. */
export interface WatchOptions {
  /** Agents to watch; all (including ones that appear later) when empty or absent. */
  readonly names?: readonly string[] | undefined;
  /**
   * Resume after this revision (one seen in an earlier watch): the changes since are replayed
   * instead of a snapshot, when the server still has them all; otherwise a snapshot is sent.
   */
  readonly resumeAfterRevision?: number | undefined;
  /** Ends the iteration (without an error) when aborted. */
  readonly signal?: AbortSignal | undefined;
}

/** Changes buffered per watcher before coalescing starts (as for the RPC). */
const WATCH_BUFFER_LIMIT = 1024;

function changeEvent(change: AgentChange): WatchEvent {
  return {
    type: change.kind === "removed" ? "REMOVED" : "CHANGE",
    revision: change.revision,
    atMs: change.atMs,
    agent: change.status,
    previousState: change.previousState,
    previousHealth: change.previousHealth,
  };
}

/**
 * The events of `backend` for `options`, until `options.signal` or `stopped` aborts.
 * @throws DeployError AGENT_NOT_FOUND / INVALID_AGENT_NAME for a name in `names` (before any
 *   event), WATCHER_TOO_SLOW when the consumer fell too far behind.
 */
export async function* watchAgents(
  backend: AgentBackend,
  now: () => number,
  options: WatchOptions,
  stopped: AbortSignal,
): AsyncGenerator<WatchEvent, void, undefined> {
  const names = new Set(options.names ?? []);
  for (const name of names) backend.status(name); // validates every name first
  const selected = (name: string): boolean => names.size === 0 || names.has(name);
  const ended = (): boolean => stopped.aborted || options.signal?.aborted === true;
  if (ended()) return;
  const queue = new WatchQueue(WATCH_BUFFER_LIMIT);
  // Subscribe before the snapshot so that no change between the two is lost.
  const unsubscribe = backend.events.subscribe((change) => {
    if (selected(change.name)) queue.push(change);
  });
  const wake = (): void => queue.wake();
  stopped.addEventListener("abort", wake, { once: true });
  options.signal?.addEventListener("abort", wake, { once: true });
  try {
    const resumeAfter = options.resumeAfterRevision ?? 0;
    const missed = resumeAfter > 0 ? backend.events.since(resumeAfter) : undefined;
    let sentUpTo = backend.events.revision;
    if (missed !== undefined) {
      for (const change of missed) if (selected(change.name)) yield changeEvent(change);
    } else {
      const atMs = now();
      for (const agent of backend.list()) {
        if (selected(agent.name)) yield { type: "SNAPSHOT", revision: sentUpTo, atMs, agent };
      }
      yield { type: "SNAPSHOT_COMPLETE", revision: sentUpTo, atMs };
    }
    while (!ended()) {
      if (queue.overflowed) {
        throw new DeployError(
          "WATCHER_TOO_SLOW",
          "the watcher did not keep up with the changes; resume after the last revision seen",
        );
      }
      const changes = queue.drain();
      if (changes.length === 0) {
        // No timeout is needed: a push, the signal or the stop wakes it.
        await queue.waitForItems(2 ** 31 - 1);
        continue;
      }
      for (const change of changes) {
        if (change.revision <= sentUpTo) continue; // covered by the snapshot or the replay
        sentUpTo = change.revision;
        yield changeEvent(change);
        if (ended()) return;
      }
    }
  } finally {
    unsubscribe();
    stopped.removeEventListener("abort", wake);
    options.signal?.removeEventListener("abort", wake);
  }
}
