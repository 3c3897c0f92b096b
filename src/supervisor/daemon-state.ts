/**
 * The daemon's durable state (SPEC §5): state.json read once at start, with the state dir's
 * ownership secret (made at the first start and written at once, before any agent is spawned)
 * and the cgroups of its agents; then saved after every change. The restore of the previous run
 * is in `restore-state.ts`.
 */
import type { Logger } from "../core/logger.ts";
import { Cgroups, type CgroupVersion } from "../platform/cgroups.ts";
import type { StateFile } from "../platform/state-file.ts";
import { AgentOwnership, isUsableSecret, newSecret } from "./agent-ownership.ts";
import type { AgentRegistry, PersistedAgent } from "./agent-registry.ts";

export { restoreState } from "./restore-state.ts";

/** Version of the state.json layout. */
export const STATE_VERSION = 1;

/** First and longest wait before a failed state write is tried again. */
const SAVE_RETRY_FIRST_MS = 1_000;
const SAVE_RETRY_MAX_MS = 30_000;

interface StateDocument {
  readonly version: number;
  readonly savedAt: string;
  /** The watch revision at the time of the save; the next run's revisions start above it. */
  readonly revision?: number;
  /**
   * The state dir's ownership secret: agents carry a token derived from it, by which the next
   * daemon proves them its own (the file is mode 0600; never logged).
   */
  readonly secret?: string;
  /** The base directory of the agents' cgroups, when there is one (the next daemon's first try). */
  readonly cgroup?: string;
  readonly agents: Record<string, PersistedAgent>;
}

/** What a daemon knows of its state dir once it has read state.json. */
export interface DaemonState {
  readonly file: StateFile;
  /** Proves which processes are this state dir's agents (the secret's tokens). */
  readonly ownership: AgentOwnership;
  /** The agents' cgroups; undefined where the machine offers no writable hierarchy. */
  readonly cgroups: Cgroups | undefined;
  /** What the previous run recorded, by agent (empty when nothing could be read). */
  readonly recorded: Readonly<Record<string, PersistedAgent>>;
  /** The previous run's last watch revision. */
  readonly revision: number | undefined;
}

/** Options of {@link loadDaemonState}. */
export interface DaemonStateOptions {
  /** The absolute state dir: processes carrying earlier daemons' marker for it are reported. */
  readonly stateDir?: string;
  /** cgroup versions to try, in order (default `[2, 1]`; `[]`: find agents' trees through /proc). */
  readonly cgroupVersions?: readonly CgroupVersion[];
}

function parseDocument(data: unknown): StateDocument | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const doc = data as Partial<StateDocument>;
  if (doc.version !== STATE_VERSION || typeof doc.agents !== "object" || doc.agents === null) {
    return undefined;
  }
  return doc as StateDocument;
}

/**
 * Reads state.json (a damaged file is set aside and its backup used, with a warning), takes its
 * ownership secret or makes one, finds the agents' cgroups (the recorded base first), and, when
 * the secret is new, writes it at once: an agent spawned before the secret is on disk could not
 * be proven ours after a crash. Never throws on the file's content; a failed write is logged.
 */
export async function loadDaemonState(
  file: StateFile,
  logger: Logger,
  options: DaemonStateOptions = {},
): Promise<DaemonState> {
  const read = await file.read();
  let doc: StateDocument | undefined;
  if (!read.ok) {
    if (read.reason === "corrupt") {
      logger.warn("state file unreadable; starting without previous state", {
        path: file.path,
        problem: read.message,
      });
    }
  } else {
    if (read.source === "backup") {
      logger.warn("state file was damaged; restored from its last good copy", { path: file.path });
    }
    doc = parseDocument(read.data);
    if (doc === undefined) {
      logger.warn("state file has an unknown layout; ignoring it", { path: file.path });
    }
  }
  const agents = doc?.agents ?? {};
  const kept = isUsableSecret(doc?.secret) ? doc.secret : undefined;
  if (kept === undefined && Object.keys(agents).length > 0) {
    logger.warn(
      "the state file has no ownership secret (an earlier version wrote it): the processes it records cannot be proven this state dir's and are left alone",
      { path: file.path },
    );
  }
  const ownership = new AgentOwnership(kept ?? newSecret(), {
    ...(options.stateDir !== undefined && { stateDir: options.stateDir }),
  });
  const cgroups = Cgroups.open({
    baseName: ownership.cgroupBaseName,
    recordedBase: typeof doc?.cgroup === "string" ? doc.cgroup : undefined,
    ...(options.cgroupVersions !== undefined && { versions: options.cgroupVersions }),
  });
  logger.info("process containment", {
    mechanism:
      cgroups?.describe() ?? "process groups, and /proc for processes that leave them (no cgroup)",
  });
  const revision =
    typeof doc?.revision === "number" && Number.isSafeInteger(doc.revision)
      ? doc.revision
      : undefined;
  if (kept === undefined) {
    const fresh: StateDocument = {
      version: STATE_VERSION,
      savedAt: new Date().toISOString(),
      ...(revision !== undefined && { revision }),
      secret: ownership.secret,
      ...(cgroups !== undefined && { cgroup: cgroups.base }),
      agents,
    };
    await file.write(fresh).catch((error: unknown) => {
      logger.error(
        "cannot save the state file's ownership secret: agents started before it is saved cannot be adopted after a crash",
        { path: file.path, error: String(error) },
      );
    });
  }
  return { file, ownership, cgroups, recorded: agents, revision };
}

/**
 * Saves the registry's durable facts to state.json after every change, one write
 * at a time (the StateFile merges waiting writes into one of the newest data).
 */
export class StateSaver {
  readonly #file: StateFile;
  readonly #registry: () => AgentRegistry;
  readonly #logger: Logger;
  readonly #state: Pick<DaemonState, "ownership" | "cgroups"> | undefined;
  #last = "";
  #scheduled = false;
  #failures = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;

  /** @param state the secret and cgroup base written with every save (none: neither). */
  constructor(
    file: StateFile,
    registry: () => AgentRegistry,
    logger: Logger,
    state?: Pick<DaemonState, "ownership" | "cgroups">,
  ) {
    this.#file = file;
    this.#registry = registry;
    this.#logger = logger;
    this.#state = state;
  }

  /**
   * Schedules a write if the durable facts changed. Calls within one turn of the event loop make
   * one check (a hundred agents starting at once would otherwise serialise every agent's facts
   * once per change of any of them). A failed write (disk full, read-only) is logged, the last
   * good file stays, and the write is retried with backoff until it succeeds, so the file
   * catches up once the disk recovers even if nothing else changes.
   */
  schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.save().then(
        () => {
          if (this.#failures > 0) {
            this.#logger.info("state file saved again", { path: this.#file.path });
          }
          this.#failures = 0;
          clearTimeout(this.#retryTimer);
          this.#retryTimer = undefined;
        },
        (error: unknown) => {
          this.#logger.error("cannot save state file; the previous good copy is kept", {
            path: this.#file.path,
            error: String(error),
            retryInMs: this.#retryDelayMs(),
          });
          this.#scheduleRetry();
        },
      );
    });
  }

  #retryDelayMs(): number {
    return Math.min(SAVE_RETRY_FIRST_MS * 2 ** this.#failures, SAVE_RETRY_MAX_MS);
  }

  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined) return;
    const delayMs = this.#retryDelayMs();
    this.#failures += 1;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.schedule();
    }, delayMs);
    this.#retryTimer.unref();
  }

  /** Writes now (if anything changed) and resolves when it is on disk. */
  async save(): Promise<void> {
    const registry = this.#registry();
    const agents = registry.persistentState();
    const key = JSON.stringify(agents);
    if (key === this.#last) return;
    this.#last = key;
    const cgroup = this.#state?.cgroups?.base;
    const doc: StateDocument = {
      version: STATE_VERSION,
      savedAt: new Date().toISOString(),
      revision: registry.events.revision,
      ...(this.#state !== undefined && { secret: this.#state.ownership.secret }),
      ...(cgroup !== undefined && { cgroup }),
      agents,
    };
    try {
      await this.#file.write(doc);
    } catch (error) {
      this.#last = ""; // retry with the next change
      throw error;
    }
  }
}
