/**
 * Operations run one after another per key (an agent's Deploy, Undeploy and Restart on a
 * backend), each after the previous one settled, whatever its outcome. Pure promise plumbing.
 */
export class KeyedQueue {
  readonly #tails = new Map<string, Promise<void>>();

  /**
   * Runs `operation` once every operation queued before it for `key` has settled; resolves or
   * rejects with its outcome. A key with nothing queued holds no memory.
   */
  run<T>(key: string, operation: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const next = previous.then(operation);
    // The tail settles either way (the outcome is the caller's, through `next`) and forgets
    // itself when nothing was queued behind it.
    const forget = (): void => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
    const tail = next.then(forget, forget);
    this.#tails.set(key, tail);
    return next;
  }

  /** Keys with an operation queued or running (for tests). */
  get size(): number {
    return this.#tails.size;
  }
}
