/**
 * A list-and-watch cache of one kind of object (the informer of client-go, reduced to what the
 * backend needs): list once, then watch from the list's resourceVersion, keeping a map by name.
 *
 * - Bookmarks (`allowWatchBookmarks`) only move the resourceVersion, so a reconnection resumes
 *   close to now: https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks
 * - A watch that ends (the API server closes watches after a timeout) resumes from the last
 *   resourceVersion seen.
 * - 410 Gone (as an ERROR event or as the status of the watch request) means the version is
 *   too old to resume from: the cache relists, emits the differences, and calls `onRelist` so
 *   the backend can send its watchers a fresh snapshot:
 *   https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses
 * - Any other failure is retried after a backoff (250 ms doubling to 10 s); the cache keeps
 *   serving what it has meanwhile.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { runInBackground } from "../core/background-task.ts";
import type { Logger } from "../core/logger.ts";

/** The part of any Kubernetes object the cache reads. */
export interface KubeItem {
  readonly metadata: {
    readonly name?: string | undefined;
    readonly resourceVersion?: string | undefined;
    readonly [field: string]: unknown;
  };
  readonly [field: string]: unknown;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

export interface WatchEvent {
  readonly type: WatchEventType;
  readonly object: KubeItem & { readonly code?: number };
}

/** One kind of object in one namespace, under one label selector. */
export interface ListWatchSource {
  /** A consistent list and its resourceVersion. */
  list(
    signal: AbortSignal,
  ): Promise<{ readonly items: KubeItem[]; readonly resourceVersion: string }>;
  /**
   * Watches from `resourceVersion` (with bookmarks), calling `onEvent` for each event; resolves
   * when the stream ends or `signal` aborts. Rejects with an error whose `statusCode` (or `code`)
   * is 410 when the version is gone.
   */
  watch(
    resourceVersion: string,
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
  ): Promise<void>;
}

export interface InformerOptions<T extends KubeItem> {
  /** An object was added or changed (`object`), or deleted (`object` undefined). */
  readonly onChange: (name: string, object: T | undefined) => void;
  /** The cache was rebuilt from a fresh list after 410 Gone (not called for the first list). */
  readonly onRelist?: () => void;
  readonly logger: Logger;
  /** What is watched, for log lines. */
  readonly what: string;
  readonly signal: AbortSignal;
}

const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 10_000;

function statusCodeOf(error: unknown): number | undefined {
  const e = error as { statusCode?: unknown; code?: unknown };
  if (typeof e?.statusCode === "number") return e.statusCode;
  if (typeof e?.code === "number") return e.code;
  return undefined;
}

export class Informer<T extends KubeItem> {
  readonly #source: ListWatchSource;
  readonly #options: InformerOptions<T>;
  readonly #objects = new Map<string, T>();
  #resourceVersion = "";
  #synced: Promise<void>;
  #resolveSynced: () => void = () => {};
  #rejectSynced: (error: unknown) => void = () => {};
  /** Relists after the first list (410 Gone), for tests and metrics. */
  relists = 0;

  constructor(source: ListWatchSource, options: InformerOptions<T>) {
    this.#source = source;
    this.#options = options;
    this.#synced = new Promise((resolve, reject) => {
      this.#resolveSynced = resolve;
      this.#rejectSynced = reject;
    });
  }

  /**
   * Starts the loop; the promise resolves once the first list is in the cache. The loop retries
   * every API failure itself; should it still end with an error (a bug), that is logged, the
   * cache stops changing, and a start still waiting for the first list rejects with it.
   */
  start(): Promise<void> {
    const { logger, what } = this.#options;
    runInBackground(
      { logger, fields: { what }, onFailure: (_task, error) => this.#rejectSynced(error) },
      "kubernetes list/watch loop",
      () => this.#run(),
    );
    return this.#synced;
  }

  get(name: string): T | undefined {
    return this.#objects.get(name);
  }

  list(): T[] {
    return [...this.#objects.values()];
  }

  async #run(): Promise<void> {
    const { signal, logger, what } = this.#options;
    let needList = true;
    let first = true;
    let retryMs = FIRST_RETRY_MS;
    while (!signal.aborted) {
      try {
        if (needList) {
          const listed = await this.#source.list(signal);
          this.#replace(listed.items as T[]);
          this.#resourceVersion = listed.resourceVersion;
          needList = false;
          if (first) this.#resolveSynced();
          else {
            this.relists += 1;
            this.#options.onRelist?.();
          }
          first = false;
        }
        const attempt = new AbortController();
        const stop = AbortSignal.any([signal, attempt.signal]);
        let gone = false;
        let received = 0;
        await this.#source.watch(
          this.#resourceVersion,
          (event) => {
            received += 1;
            if (event.type === "ERROR") {
              if (event.object.code === 410) gone = true;
              else logger.warn("kubernetes watch error event", { what, object: event.object });
              attempt.abort();
              return;
            }
            this.#apply(event);
          },
          stop,
        );
        if (gone) {
          logger.info("kubernetes watch expired (410 Gone): relisting", { what });
          needList = true;
          retryMs = FIRST_RETRY_MS;
        } else if (received === 0 && !signal.aborted) {
          // Closed at once without a word (a proxy, an overloaded server): do not spin.
          await sleep(retryMs, undefined, { signal }).catch(() => undefined);
          retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
        } else {
          retryMs = FIRST_RETRY_MS;
        }
      } catch (error) {
        if (signal.aborted) return;
        if (statusCodeOf(error) === 410) {
          logger.info("kubernetes watch expired (410 Gone): relisting", { what });
          needList = true;
          continue;
        }
        logger.warn("kubernetes list/watch failed; retrying", {
          what,
          error: error instanceof Error ? error.message : String(error),
          retryMs,
        });
        await sleep(retryMs, undefined, { signal }).catch(() => undefined);
        retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
      }
    }
  }

  #apply(event: WatchEvent): void {
    const object = event.object as T;
    const version = object.metadata.resourceVersion;
    if (version !== undefined && version !== "") this.#resourceVersion = version;
    if (event.type === "BOOKMARK") return;
    const name = object.metadata.name;
    if (name === undefined) return;
    if (event.type === "DELETED") {
      if (this.#objects.delete(name)) this.#options.onChange(name, undefined);
      return;
    }
    this.#objects.set(name, object);
    this.#options.onChange(name, object);
  }

  /** Replaces the cache by a fresh list, reporting every difference. */
  #replace(items: readonly T[]): void {
    const fresh = new Map<string, T>();
    for (const item of items)
      if (item.metadata.name !== undefined) fresh.set(item.metadata.name, item);
    for (const name of [...this.#objects.keys()]) {
      if (!fresh.has(name)) {
        this.#objects.delete(name);
        this.#options.onChange(name, undefined);
      }
    }
    for (const [name, item] of fresh) {
      const old = this.#objects.get(name);
      this.#objects.set(name, item);
      if (old?.metadata.resourceVersion !== item.metadata.resourceVersion || old === undefined) {
        this.#options.onChange(name, item);
      }
    }
  }
}
