/**
 * Paces the snapshots of `WatchHealth`. Every new watcher first receives one message per agent;
 * a thousand watchers opening at once would queue a hundred thousand messages in the server's
 * HTTP/2 buffers (over 100 MiB of memory that the allocator keeps afterwards). Through the gate
 * at most `limit` snapshots are in flight at a time: a snapshot holds its place until its last
 * message was taken by the transport (which stops taking while the client lags, HTTP/2 flow
 * control being exhausted), or for `maxHoldMs` at most, so a client that never reads cannot
 * hold up the others.
 */
export class SnapshotGate {
  readonly #limit: number;
  readonly #maxHoldMs: number;
  #inFlight = 0;
  readonly #waiting: (() => void)[] = [];

  /**
   * @param limit snapshots sent at the same time (default 16).
   * @param maxHoldMs longest time one snapshot keeps its place, in ms (default 1000).
   */
  constructor(limit = 16, maxHoldMs = 1_000) {
    this.#limit = limit;
    this.#maxHoldMs = maxHoldMs;
  }

  /**
   * Resolves with the release function once a place is free (at once when one is), or when
   * `signal` aborts (the release is then a no-op). Call the release when the snapshot is out.
   */
  async enter(signal: AbortSignal): Promise<() => void> {
    if (this.#inFlight >= this.#limit) {
      await new Promise<void>((resolve) => {
        const onAbort = (): void => {
          const index = this.#waiting.indexOf(admit);
          if (index >= 0) this.#waiting.splice(index, 1);
          resolve();
        };
        const admit = (): void => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
        this.#waiting.push(admit);
        signal.addEventListener("abort", onAbort, { once: true });
      });
      if (signal.aborted) return () => {};
    } else {
      this.#inFlight += 1;
    }
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      const next = this.#waiting.shift();
      // The place passes straight to the next waiter; otherwise it is freed.
      if (next !== undefined) next();
      else this.#inFlight -= 1;
    };
    const timer = setTimeout(release, this.#maxHoldMs);
    timer.unref();
    return release;
  }
}
