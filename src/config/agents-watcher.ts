/**
 * Keeps the view of the agents directory current while the server runs (SPEC §2: an added,
 * changed or removed definition shows within a few seconds).
 *
 * Two mechanisms, because neither is enough alone:
 * - `fs.watch` on the agents directory and on each agent directory (one level, not recursive:
 *   agent directories may hold virtualenvs or node_modules with thousands of subdirectories,
 *   and recursive watching on Linux costs one inotify watch per subdirectory) gives changes
 *   within the debounce delay;
 * - a periodic rescan (every 2 s by default) catches what `fs.watch` misses: network and
 *   container filesystems, editors that replace directories, exhausted inotify watches.
 *
 * Events are coalesced: the first event of a burst schedules one rescan `debounceMs` later, and
 * later events in the burst join it, so an agent that keeps writing files into its directory
 * cannot postpone rescans forever. Rescans never overlap.
 */
import { type FSWatcher, watch } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { ConfigError } from "./config-error.ts";
import {
  DEFINITION_FILE_NAMES,
  type DiscoveryResult,
  discoverAgents,
  listCandidateDirs,
} from "./discovery.ts";

/** Options of `watchAgentsDirectory`. */
export interface WatchAgentsOptions {
  /** Period of the safety-net rescan, in ms; default 2000. */
  readonly pollIntervalMs?: number;
  /** Delay from the first file-system event of a burst to the rescan, in ms; default 100. */
  readonly debounceMs?: number;
  /**
   * A discovery result the caller already has (from `discoverAgents`): the baseline for the
   * first comparison, so a change made between that scan and this watcher's first scan still
   * reaches `onChange`. Without it the watcher's own first scan is the baseline.
   */
  readonly initial?: DiscoveryResult | undefined;
  /**
   * How one scan reads the directory; default `discoverAgents(root)`. The packages directory
   * passes one that resolves links and adds each package's facts.
   */
  readonly discover?: ((root: string) => Promise<DiscoveryResult>) | undefined;
  /** Called after every completed rescan, whether or not it found a change (tests, metrics). */
  readonly onScan?: (() => void) | undefined;
  /** Stops the watcher: every watcher and timer is released. */
  readonly signal: AbortSignal;
  /**
   * Receives errors thrown by `onChange` and unexpected scan failures (the watcher keeps going).
   * Default: `process.emitWarning`.
   */
  readonly onError?: (error: unknown) => void;
}

/** Default period of the safety-net rescan, in ms. */
export const DEFAULT_POLL_INTERVAL_MS = 2_000;
/** Default delay from the first file-system event to the rescan, in ms. */
export const DEFAULT_DEBOUNCE_MS = 100;

/**
 * Scans `agentsDir` once, then watches it until `options.signal` aborts, calling `onChange` with
 * a fresh discovery result whenever it differs from the previous one. Results are compared by
 * content (every field of every agent, its messages and warnings): touching a file or editing a
 * comment does not call `onChange`, any change that matters does.
 *
 * When the agents directory disappears while watched, `onChange` receives a result with no
 * agents and a warning saying so; when it reappears, watching resumes.
 *
 * @returns the watcher's first discovery result. `onChange` is called for it only when
 *   `options.initial` is given and differs from it; otherwise only for later changes. Watching
 *   starts before the first scan, so no change is lost in between.
 * @throws ConfigError when `agentsDir` is missing or unreadable at the start (nothing is left
 *   running); the abort reason when `signal` is aborted before the initial scan completes.
 */
export async function watchAgentsDirectory(
  agentsDir: string,
  onChange: (result: DiscoveryResult) => void,
  options: WatchAgentsOptions,
): Promise<DiscoveryResult> {
  options.signal.throwIfAborted();
  const watcher = new AgentsWatcher(path.resolve(agentsDir), onChange, options);
  return watcher.start();
}

interface WatchedDir {
  readonly watcher: FSWatcher;
  /** Inode of the directory when the watch began: a replaced directory needs a new watch. */
  readonly ino: number;
}

class AgentsWatcher {
  readonly #root: string;
  readonly #onChange: (result: DiscoveryResult) => void;
  readonly #onError: (error: unknown) => void;
  readonly #onScan: (() => void) | undefined;
  readonly #discoverFn: (root: string) => Promise<DiscoveryResult>;
  readonly #pollIntervalMs: number;
  readonly #debounceMs: number;
  readonly #signal: AbortSignal;
  readonly #baseline: string | undefined;
  readonly #watched = new Map<string, WatchedDir>();
  #previous = "";
  #debounceTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #scanning = false;
  #rescanRequested = false;
  #closed = false;

  constructor(
    root: string,
    onChange: (result: DiscoveryResult) => void,
    options: WatchAgentsOptions,
  ) {
    this.#root = root;
    this.#onChange = onChange;
    this.#onError = options.onError ?? defaultOnError;
    this.#onScan = options.onScan;
    this.#discoverFn = options.discover ?? ((root) => discoverAgents(root));
    this.#pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.#debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.#signal = options.signal;
    this.#baseline = options.initial === undefined ? undefined : fingerprint(options.initial);
  }

  async start(): Promise<DiscoveryResult> {
    const onAbort = () => this.#close();
    this.#signal.addEventListener("abort", onAbort, { once: true });
    // The initial scan counts as a running scan: events meanwhile only request a rescan, so
    // `onChange` never runs before the caller has the initial result.
    this.#scanning = true;
    try {
      await this.#syncWatches([]);
      const initial = await this.#discoverFn(this.#root);
      this.#signal.throwIfAborted();
      await this.#syncWatches(await this.#agentDirs());
      this.#signal.throwIfAborted();
      this.#previous = this.#baseline === undefined ? fingerprint(initial) : this.#baseline;
      this.#afterScan();
      this.#deliver(initial);
      return initial;
    } catch (error) {
      this.#signal.removeEventListener("abort", onAbort);
      this.#close();
      throw error;
    }
  }

  #close(): void {
    this.#closed = true;
    clearTimeout(this.#debounceTimer);
    clearTimeout(this.#pollTimer);
    this.#debounceTimer = undefined;
    this.#pollTimer = undefined;
    for (const { watcher } of this.#watched.values()) watcher.close();
    this.#watched.clear();
  }

  /** A file-system event: rescan soon, joining a rescan already scheduled. */
  #trigger(): void {
    if (this.#closed || this.#debounceTimer !== undefined) return;
    this.#debounceTimer = setTimeout(() => {
      this.#debounceTimer = undefined;
      this.#scan().catch((error: unknown) => this.#onError(error));
    }, this.#debounceMs);
  }

  #schedulePoll(): void {
    clearTimeout(this.#pollTimer);
    if (this.#closed) return;
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = undefined;
      this.#scan().catch((error: unknown) => this.#onError(error));
    }, this.#pollIntervalMs);
  }

  async #scan(): Promise<void> {
    if (this.#closed) return;
    if (this.#scanning) {
      this.#rescanRequested = true;
      return;
    }
    this.#scanning = true;
    try {
      const result = await this.#discover();
      if (this.#closed || result === undefined) return;
      await this.#syncWatches(await this.#agentDirs());
      if (this.#closed) return;
      this.#deliver(result);
      try {
        this.#onScan?.();
      } catch (error) {
        this.#onError(error);
      }
    } finally {
      this.#afterScan();
    }
  }

  /** Calls `onChange` when `result` differs from the last result seen. */
  #deliver(result: DiscoveryResult): void {
    const key = fingerprint(result);
    if (key === this.#previous) return;
    this.#previous = key;
    try {
      this.#onChange(result);
    } catch (error) {
      this.#onError(error);
    }
  }

  #afterScan(): void {
    this.#scanning = false;
    if (this.#closed) return;
    this.#schedulePoll();
    if (this.#rescanRequested) {
      this.#rescanRequested = false;
      this.#trigger();
    }
  }

  /** A discovery result; a vanished agents directory is an empty one with a warning. */
  async #discover(): Promise<DiscoveryResult | undefined> {
    try {
      return await this.#discoverFn(this.#root);
    } catch (error) {
      if (error instanceof ConfigError) {
        return Object.freeze({
          agents: Object.freeze([]),
          warnings: Object.freeze([error.message]),
        });
      }
      this.#onError(error);
      return undefined;
    }
  }

  async #agentDirs(): Promise<string[]> {
    try {
      return (await listCandidateDirs(this.#root)).map((name) => path.join(this.#root, name));
    } catch {
      // The agents directory vanished: the root watch is retried, agent directories are gone.
      return [];
    }
  }

  /** Watches the root and `dirs`, and nothing else; renews watches of replaced directories. */
  async #syncWatches(dirs: readonly string[]): Promise<void> {
    const wanted = new Set([this.#root, ...dirs]);
    for (const [dir, watched] of this.#watched) {
      if (!wanted.has(dir)) {
        watched.watcher.close();
        this.#watched.delete(dir);
      }
    }
    for (const dir of wanted) {
      let ino: number;
      try {
        const info = await stat(dir);
        if (!info.isDirectory()) continue;
        ino = info.ino;
      } catch {
        // Gone since it was listed; the next scan sees that.
        continue;
      }
      if (this.#closed) return;
      const current = this.#watched.get(dir);
      if (current?.ino === ino) continue;
      current?.watcher.close();
      this.#watched.delete(dir);
      this.#watch(dir, ino);
    }
  }

  #watch(dir: string, ino: number): void {
    const isRoot = dir === this.#root;
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, (_event, filename) => {
        // In an agent directory only the definition files matter; agents may write logs there.
        if (
          isRoot ||
          filename === null ||
          (DEFINITION_FILE_NAMES as readonly string[]).includes(filename)
        ) {
          this.#trigger();
        }
      });
    } catch {
      // Out of inotify watches, or the directory vanished: the periodic rescan still covers it.
      return;
    }
    watcher.on("error", () => {
      // The watched directory went away or the watch broke: drop it; the rescan renews it.
      watcher.close();
      if (this.#watched.get(dir)?.watcher === watcher) this.#watched.delete(dir);
      this.#trigger();
    });
    this.#watched.set(dir, { watcher, ino });
  }
}

function fingerprint(result: DiscoveryResult): string {
  return JSON.stringify(result);
}

function defaultOnError(error: unknown): void {
  process.emitWarning(error instanceof Error ? error : String(error), "AgentsWatcherWarning");
}
