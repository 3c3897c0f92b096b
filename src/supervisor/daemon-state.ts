import { DEFINITION_DEFAULTS } from "../config/parse-definition.ts";
import type { Logger } from "../core/logger.ts";
import { adoptProcess } from "../platform/adopted-process.ts";
import { isSameProcess } from "../platform/proc-info.ts";
import type { StateFile } from "../platform/state-file.ts";
import { reapLeftoverGroup } from "../platform/terminate-group.ts";
import type { AgentRegistry, PersistedAgent } from "./agent-registry.ts";

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
  readonly agents: Record<string, PersistedAgent>;
}

/**
 * Saves the registry's durable facts to state.json after every change, one write
 * at a time (the StateFile merges waiting writes into one of the newest data).
 */
export class StateSaver {
  readonly #file: StateFile;
  readonly #registry: () => AgentRegistry;
  readonly #logger: Logger;
  #last = "";
  #scheduled = false;
  #failures = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(file: StateFile, registry: () => AgentRegistry, logger: Logger) {
    this.#file = file;
    this.#registry = registry;
    this.#logger = logger;
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
    const agents = this.#registry().persistentState();
    const key = JSON.stringify(agents);
    if (key === this.#last) return;
    this.#last = key;
    const doc: StateDocument = {
      version: STATE_VERSION,
      savedAt: new Date().toISOString(),
      revision: this.#registry().events.revision,
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

function parseDocument(data: unknown): StateDocument | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  const doc = data as Partial<StateDocument>;
  if (doc.version !== STATE_VERSION || typeof doc.agents !== "object" || doc.agents === null) {
    return undefined;
  }
  return doc as StateDocument;
}

/**
 * Restores the previous run: adopts every recorded agent whose process is still
 * the same live process (pid plus start time), and starts again the agents that
 * were deployed but died meanwhile, once what their old process group left behind is gone (so
 * the old port is free again and no orphan stays). Returns the names adopted and restarted.
 */
export async function restoreState(
  file: StateFile,
  registry: AgentRegistry,
  logger: Logger,
  lifetime: AbortSignal,
): Promise<{ adopted: string[]; restarted: string[] }> {
  const read = await file.read();
  if (!read.ok) {
    if (read.reason === "corrupt") {
      logger.warn("state file unreadable; starting without previous state", {
        path: file.path,
        problem: read.message,
      });
    }
    return { adopted: [], restarted: [] };
  }
  if (read.source === "backup") {
    logger.warn("state file was damaged; restored from its last good copy", { path: file.path });
  }
  const doc = parseDocument(read.data);
  if (doc === undefined) {
    logger.warn("state file has an unknown layout; ignoring it", { path: file.path });
    return { adopted: [], restarted: [] };
  }
  const { agents, revision } = doc;
  if (typeof revision === "number" && Number.isSafeInteger(revision)) {
    registry.events.advancePast(revision);
  }
  const adopted: string[] = [];
  const restarted: string[] = [];
  const reaps: Promise<unknown>[] = [];
  for (const [name, saved] of Object.entries(agents)) {
    const live =
      saved.pid > 0 &&
      saved.startTimeTicks !== undefined &&
      isSameProcess(saved.pid, saved.startTimeTicks);
    const runner = registry.has(name) ? registry.runner(name) : undefined;
    if (live && saved.startTimeTicks !== undefined) {
      if (runner === undefined) {
        logger.warn("a recorded agent is still running but its definition is gone; leaving it", {
          agent: name,
          pid: saved.pid,
        });
        continue;
      }
      const handle = adoptProcess(saved.pid, saved.startTimeTicks, { signal: lifetime });
      runner.adopt(handle, saved.port, saved.startTimeMs);
      adopted.push(name);
      continue;
    }
    const stopTimeoutMs =
      runner?.definition?.deployment.stopTimeoutMs ?? DEFINITION_DEFAULTS.stopTimeoutMs;
    const reaped = reapLeftoverGroup(saved.pid, stopTimeoutMs).then((members) => {
      if (members > 0) {
        logger.warn("stopped processes a dead agent left behind", {
          agent: name,
          pgid: saved.pid,
          members,
        });
      }
    });
    reaps.push(reaped);
    if (runner !== undefined && saved.desired === "running") {
      void reaped.then(() => runner.autostart());
      restarted.push(name);
    }
  }
  await Promise.all(reaps);
  return { adopted, restarted };
}
