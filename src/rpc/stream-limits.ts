/**
 * Caps on long-lived server streams (WatchHealth, StreamLogs follow), overall and per client, so
 * that one client holding thousands of streams can neither exhaust the daemon nor lock every other
 * client out (docs/api.md, "Limits"). A refused stream is RESOURCE_EXHAUSTED with a reason naming
 * the kind of stream and `metadata.scope` saying which cap was hit.
 */
import { DeployError, type DeployErrorCode } from "../core/errors.ts";

/** The two caps of one kind of stream. */
export interface StreamCap {
  /** Most streams of this kind open at once on the whole server. */
  readonly total: number;
  /** Most streams of this kind open at once from one client (one connection). */
  readonly perClient: number;
}

/** Defaults: generous for real dashboards and CLIs, far below what exhausts the daemon. */
export const DEFAULT_WATCH_CAP: StreamCap = Object.freeze({ total: 2000, perClient: 200 });
export const DEFAULT_LOG_FOLLOW_CAP: StreamCap = Object.freeze({ total: 512, perClient: 64 });

/** Counts the open streams of one kind, by client. */
export class StreamLimiter {
  readonly #cap: StreamCap;
  readonly #code: DeployErrorCode;
  readonly #what: string;
  readonly #byClient = new Map<string, number>();
  #open = 0;

  /**
   * @param what the streams' name in messages ("WatchHealth streams").
   * @param code the ErrorInfo reason of a refusal.
   */
  constructor(cap: StreamCap, code: DeployErrorCode, what: string) {
    if (!(cap.perClient >= 1 && cap.total >= cap.perClient)) {
      throw new RangeError(`stream caps need 1 <= perClient <= total, got ${JSON.stringify(cap)}`);
    }
    this.#cap = cap;
    this.#code = code;
    this.#what = what;
  }

  /** Streams open now. */
  get open(): number {
    return this.#open;
  }

  /**
   * Takes a place for one stream of `client`, or throws DeployError (RESOURCE_EXHAUSTED) when a
   * cap is reached. Call the returned function exactly once when the stream ends.
   */
  acquire(client: string): () => void {
    const mine = this.#byClient.get(client) ?? 0;
    if (mine >= this.#cap.perClient) {
      throw new DeployError(
        this.#code,
        `at most ${this.#cap.perClient} ${this.#what} may be open at once from one client`,
        { scope: "client", limit: String(this.#cap.perClient) },
      );
    }
    if (this.#open >= this.#cap.total) {
      throw new DeployError(
        this.#code,
        `at most ${this.#cap.total} ${this.#what} may be open at once on this server`,
        { scope: "server", limit: String(this.#cap.total) },
      );
    }
    this.#open += 1;
    this.#byClient.set(client, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open -= 1;
      const left = (this.#byClient.get(client) ?? 1) - 1;
      if (left === 0) this.#byClient.delete(client);
      else this.#byClient.set(client, left);
    };
  }
}
