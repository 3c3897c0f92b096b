/**
 * Pulling a streaming handler's responses while the call may be cancelled at any moment: each
 * pull races the call's signal. Shared by both transports' server-streaming wrappers.
 */

/** What {@link AbortableIterator.next} resolves with once the call's signal has aborted. */
export const ABORTED = Symbol("aborted");

/**
 * Pulls a handler's iterator, each result racing the call's cancellation: `next()` resolves with
 * the iterator's next result, or ABORTED as soon as the signal aborts. One abort listener serves
 * the whole stream (EventTarget listeners are costly to add and remove once per message).
 */
export class AbortableIterator<T> {
  readonly #iterator: AsyncIterator<T>;
  readonly #signal: AbortSignal;
  readonly #onLateError: (error: unknown) => void;
  #onAbort: (() => void) | undefined;
  readonly #abort = (): void => this.#onAbort?.();

  constructor(
    iterator: AsyncIterator<T>,
    signal: AbortSignal,
    onLateError: (error: unknown) => void,
  ) {
    this.#iterator = iterator;
    this.#signal = signal;
    this.#onLateError = onLateError;
    signal.addEventListener("abort", this.#abort, { once: true });
  }

  next(): Promise<IteratorResult<T> | typeof ABORTED> {
    if (this.#signal.aborted) return Promise.resolve(ABORTED);
    const next = this.#iterator.next();
    return new Promise((resolve, reject) => {
      this.#onAbort = () => {
        // The pending next() may still settle; its outcome no longer matters but must not be
        // an unhandled rejection.
        next.catch(this.#onLateError);
        resolve(ABORTED);
      };
      next.then(
        (result) => {
          this.#onAbort = undefined;
          resolve(result);
        },
        (error: unknown) => {
          this.#onAbort = undefined;
          reject(error);
        },
      );
    });
  }

  /** Removes the abort listener; `return()`s the iterator unless it finished by itself. */
  close(finished: boolean): void {
    this.#signal.removeEventListener("abort", this.#abort);
    // Not awaited: a handler blocked in an await only sees it at its next yield, and that must
    // not hold up the status.
    if (!finished) this.#iterator.return?.().catch(this.#onLateError);
  }
}
