import type { AgentChange } from "./agent-status.ts";

export type AgentChangeListener = (change: AgentChange) => void;

/**
 * The typed event stream of agent changes: assigns monotonic revisions, keeps a
 * bounded history for watchers that resume, and notifies subscribers
 * synchronously (they must not block; the watch API buffers per watcher).
 */
export class EventHub {
  readonly #historyLimit: number;
  readonly #history: AgentChange[] = [];
  readonly #listeners = new Set<AgentChangeListener>();
  #revision = 0;

  /** @param historyLimit how many past changes are kept for resuming watchers (default 4096). */
  constructor(historyLimit = 4096) {
    this.#historyLimit = historyLimit;
  }

  /** Latest revision published; 0 before the first change. */
  get revision(): number {
    return this.#revision;
  }

  publish(change: Omit<AgentChange, "revision">): AgentChange {
    this.#revision += 1;
    const full: AgentChange = Object.freeze({ ...change, revision: this.#revision });
    this.#history.push(full);
    if (this.#history.length > this.#historyLimit) this.#history.shift();
    for (const listener of this.#listeners) listener(full);
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
