import type { AgentChangeListener, ChangeFeed } from "../core/agent-backend.ts";
import type { AgentChange } from "../core/agent-status.ts";

export type { AgentChangeListener };

/**
 * The typed event stream of agent changes: assigns monotonic revisions, keeps a
 * bounded history for watchers that resume, and notifies subscribers
 * synchronously (they must not block; the watch API buffers per watcher).
 */
export class EventHub implements ChangeFeed {
  readonly #historyLimit: number;
  readonly #onListenerError: (error: unknown) => void;
  readonly #history: AgentChange[] = [];
  readonly #listeners = new Set<AgentChangeListener>();
  #revision: number;

  /**
   * @param options.historyLimit how many past changes are kept for resuming watchers (default 4096).
   * @param options.baseRevision the revision before the first change (default 0). The daemon
   *   starts from the clock in microseconds, so a new run's revisions are above any a previous
   *   run handed out and a watcher resuming from one of those gets a fresh snapshot, never a
   *   wrong history.
   * @param options.onListenerError told of an error a listener threw; the other listeners still
   *   get the change and `publish` does not throw (default: the error is dropped, so pass one).
   */
  constructor(
    options: {
      readonly historyLimit?: number;
      readonly baseRevision?: number;
      readonly onListenerError?: (error: unknown) => void;
    } = {},
  ) {
    this.#historyLimit = options.historyLimit ?? 4096;
    this.#revision = options.baseRevision ?? 0;
    this.#onListenerError = options.onListenerError ?? (() => undefined);
  }

  /** Latest revision published; the base revision before the first change. */
  get revision(): number {
    return this.#revision;
  }

  /**
   * Moves the revision up to at least `revision` (the last one a previous run saved, in case the
   * clock went back). The history is dropped, since it must stay contiguous; a watcher resuming
   * from before the jump gets a snapshot.
   */
  advancePast(revision: number): void {
    if (revision <= this.#revision) return;
    this.#revision = revision;
    this.#history.length = 0;
  }

  publish(change: Omit<AgentChange, "revision">): AgentChange {
    this.#revision += 1;
    const full: AgentChange = Object.freeze({ ...change, revision: this.#revision });
    this.#history.push(full);
    if (this.#history.length > this.#historyLimit) this.#history.shift();
    for (const listener of this.#listeners) {
      // One broken watcher must not cost the others the change, nor the publisher its state.
      try {
        listener(full);
      } catch (error) {
        this.#onListenerError(error);
      }
    }
    return full;
  }

  /** Calls `listener` for every change from now on; returns the unsubscribe function. */
  subscribe(listener: AgentChangeListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get subscriberCount(): number {
    return this.#listeners.size;
  }

  /**
   * The changes after `revision`, oldest first, or undefined when some of them
   * have already left the bounded history (the caller sends a fresh snapshot).
   */
  since(revision: number): AgentChange[] | undefined {
    if (revision === this.#revision) return [];
    // Newer than anything here: the client saw a previous daemon's revisions; snapshot.
    if (revision > this.#revision) return undefined;
    const oldest = this.#history[0];
    if (oldest === undefined || oldest.revision > revision + 1) return undefined;
    return this.#history.slice(revision + 1 - oldest.revision);
  }
}
