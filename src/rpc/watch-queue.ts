import type { AgentChange } from "../core/agent-status.ts";

/**
 * The per-watcher buffer between the event hub (which publishes synchronously)
 * and a gRPC stream (which drains at the client's pace). Up to `limit` changes
 * are kept one by one, so a watcher that keeps up sees every revision; past
 * that, a newer change of an agent replaces its older buffered one (coalescing),
 * and a watcher whose buffer still overflows is marked too slow, so memory per
 * watcher stays bounded.
 */
export class WatchQueue {
  readonly #limit: number;
  #items: AgentChange[] = [];
  #overflowed = false;
  #wake: (() => void) | undefined;

  /** @param limit changes buffered before coalescing starts (default 1024). */
  constructor(limit = 1024) {
    this.#limit = limit;
  }

  /** True once the buffer overflowed even after coalescing: end the watch. */
  get overflowed(): boolean {
    return this.#overflowed;
  }

  get size(): number {
    return this.#items.length;
  }

  push(change: AgentChange): void {
    if (this.#items.length >= this.#limit) {
      const index = this.#items.findLastIndex((c) => c.name === change.name);
      if (index >= 0 && this.#items[index]?.kind === change.kind) {
        // Keep the first "previous" state so the coalesced event still says where it came from.
        const older = this.#items[index];
        this.#items.splice(index, 1);
        this.#items.push(
          older === undefined
            ? change
            : {
                ...change,
                previousState: older.previousState,
                previousHealth: older.previousHealth,
              },
        );
      } else if (this.#items.length >= this.#limit * 2) {
        this.#overflowed = true;
      } else {
        this.#items.push(change);
      }
    } else {
      this.#items.push(change);
    }
    this.wake();
  }

  /** Takes everything buffered, oldest first. */
  drain(): AgentChange[] {
    const items = this.#items;
    this.#items = [];
    return items;
  }

  /**
   * Resolves when something is pushed, `wake()` is called, or `timeoutMs` passes. A plain timer
   * rather than an AbortSignal: with a thousand watchers this runs a thousand times per change.
   */
  waitForItems(timeoutMs: number): Promise<void> {
    if (this.#items.length > 0 || this.#overflowed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#wake = done;
    });
  }

  wake(): void {
    this.#wake?.();
  }
}
