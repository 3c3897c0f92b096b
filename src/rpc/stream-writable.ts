/**
 * Waiting until a grpc-js stream takes more writes, on the server and the client side alike:
 * `write()` returns false once grpc-js buffers a high-water mark of messages the peer has not
 * taken yet, and the writer then waits for `drain` instead of buffering without end.
 */
import type { EventEmitter } from "node:events";

/**
 * Resolves at the stream's `drain`, at the first of `endEvents` (the stream will take no more
 * writes: `close`, a client call's `status`), or when `signal` aborts; its listeners are removed
 * then. Never rejects.
 */
export function writable(
  stream: Pick<EventEmitter, "on" | "off">,
  endEvents: readonly string[],
  signal?: AbortSignal,
): Promise<void> {
  return new Promise<void>((resolve) => {
    const events = ["drain", ...endEvents];
    const done = (): void => {
      for (const event of events) stream.off(event, done);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    for (const event of events) stream.on(event, done);
    signal?.addEventListener("abort", done);
  });
}
