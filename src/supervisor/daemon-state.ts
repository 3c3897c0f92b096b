import { DEFINITION_DEFAULTS } from "../config/parse-definition.ts";
import type { Logger } from "../core/logger.ts";
import { adoptProcess } from "../platform/adopted-process.ts";
import {
  findGroupLeadersWithEnv,
  isSameProcess,
  type LeaderWithEnvironment,
  readProcessEnvironment,
  startTimeTicksToMs,
} from "../platform/proc-info.ts";
import type { StateFile } from "../platform/state-file.ts";
import { reapLeftoverGroup, terminateGroup } from "../platform/terminate-group.ts";
import { SUPERVISOR_ENV } from "./agent-command.ts";
import type { AgentRegistry, PersistedAgent } from "./agent-registry.ts";
import type { AgentRunner } from "./agent-runner.ts";

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
    const registry = this.#registry();
    const agents = registry.persistentState();
    const key = JSON.stringify(agents);
    if (key === this.#last) return;
    this.#last = key;
    const doc: StateDocument = {
      version: STATE_VERSION,
      savedAt: new Date().toISOString(),
      revision: registry.events.revision,
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
 * The agent processes some daemon on this state dir spawned (marked by {@link SUPERVISOR_ENV}),
 * by agent name. A daemon killed between spawning an agent and saving its pid leaves one that
 * state.json does not know; this finds it.
 */
function markedAgents(stateDir: string | undefined): Map<string, LeaderWithEnvironment[]> {
  const byName = new Map<string, LeaderWithEnvironment[]>();
  if (stateDir === undefined) return byName;
  for (const leader of findGroupLeadersWithEnv(SUPERVISOR_ENV, stateDir)) {
    const name = leader.env.get("ATOLL_AGENT_NAME");
    if (name === undefined) continue;
    byName.set(name, [...(byName.get(name) ?? []), leader]);
  }
  return byName;
}

/**
 * Restores the previous run: adopts every recorded agent whose process is still the same live
 * process (pid plus start time), and an agent process the previous daemon spawned but had not
 * recorded yet (found by its environment when `stateDir` is given); stops any second process of
 * one agent; and starts again the agents that were deployed but died meanwhile, once what their
 * old process group left behind is gone (so the old port is free again and no orphan stays).
 * A record it cannot trust (a port of 0, not a number, or one another agent holds) stops that
 * process and starts the agent afresh instead: this never throws on odd data in the file.
 * Returns the names adopted and restarted.
 */
export async function restoreState(
  file: StateFile,
  registry: AgentRegistry,
  logger: Logger,
  lifetime: AbortSignal,
  stateDir?: string,
): Promise<{ adopted: string[]; restarted: string[] }> {
  const read = await file.read();
  let agents: Record<string, PersistedAgent> = {};
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
    const doc = parseDocument(read.data);
    if (doc === undefined) {
      logger.warn("state file has an unknown layout; ignoring it", { path: file.path });
    } else {
      agents = doc.agents;
      if (typeof doc.revision === "number" && Number.isSafeInteger(doc.revision)) {
        registry.events.advancePast(doc.revision);
      }
    }
  }
  const marked = markedAgents(stateDir);
  const adopted: string[] = [];
  const restarted: string[] = [];
  const reaps: Promise<unknown>[] = [];
  const stopProcess = (name: string, pid: number, stopTimeoutMs: number, why: string): void => {
    logger.warn(why, { agent: name, pid });
    reaps.push(
      terminateGroup(pid, { stopTimeoutMs }).catch((error: unknown) =>
        logger.error("cannot stop an agent process", { agent: name, pid, error }),
      ),
    );
  };
  /**
   * Adopts `pid` on the port its environment names (what it was really given), else the
   * recorded one. A process whose port is unknown or leased to another agent cannot be
   * supervised: it is stopped, and started again when it was deployed. Never throws.
   */
  const tryAdopt = (
    runner: AgentRunner,
    process: { pid: number; startTimeTicks: number; env: ReadonlyMap<string, string> | undefined },
    recordedPort: unknown,
    startTimeMs: number | undefined,
    stopTimeoutMs: number,
  ): boolean => {
    const port = validPort(process.env?.get("ATOLL_AGENT_PORT")) ?? validPort(recordedPort);
    if (port !== undefined) {
      try {
        runner.adopt(
          adoptProcess(process.pid, process.startTimeTicks, { signal: lifetime }),
          port,
          startTimeMs,
        );
        return true;
      } catch (error) {
        logger.warn("cannot adopt an agent process on its recorded port", {
          agent: runner.name,
          pid: process.pid,
          port,
          error: String(error),
        });
      }
    }
    stopProcess(
      runner.name,
      process.pid,
      stopTimeoutMs,
      port === undefined
        ? "stopping an agent process whose port is not known"
        : "stopping an agent process whose port another agent holds",
    );
    return false;
  };
  for (const name of new Set([...Object.keys(agents), ...marked.keys()])) {
    const saved = agents[name];
    const live =
      saved !== undefined &&
      typeof saved.pid === "number" &&
      saved.pid > 0 &&
      typeof saved.startTimeTicks === "number" &&
      isSameProcess(saved.pid, saved.startTimeTicks);
    const markedHere = marked.get(name) ?? [];
    // Newest first: of several unrecorded processes, the last one spawned is the one to keep.
    const unrecorded = markedHere
      .filter((leader) => !(live && leader.stat.pid === saved.pid))
      .sort((a, b) => b.stat.startTimeTicks - a.stat.startTimeTicks);
    const runner = registry.has(name) ? registry.runner(name) : undefined;
    if (runner === undefined) {
      if (live || unrecorded.length > 0) {
        logger.warn("a recorded agent is still running but its definition is gone; leaving it", {
          agent: name,
          pids: [...(live ? [saved.pid] : []), ...unrecorded.map((l) => l.stat.pid)],
        });
      }
      continue;
    }
    const stopTimeoutMs =
      runner.definition?.deployment.stopTimeoutMs ?? DEFINITION_DEFAULTS.stopTimeoutMs;
    const wanted = saved?.desired === "running";
    if (live && typeof saved.startTimeTicks === "number") {
      const env =
        markedHere.find((leader) => leader.stat.pid === saved.pid)?.env ??
        readProcessEnvironment(saved.pid);
      const ok = tryAdopt(
        runner,
        { pid: saved.pid, startTimeTicks: saved.startTimeTicks, env },
        saved.port,
        saved.startTimeMs,
        stopTimeoutMs,
      );
      for (const extra of unrecorded) {
        stopProcess(name, extra.stat.pid, stopTimeoutMs, "stopping a second process of an agent");
      }
      if (ok) adopted.push(name);
      else if (wanted) restarted.push(name);
      continue;
    }
    if (saved !== undefined && typeof saved.pid === "number") {
      reaps.push(
        reapLeftoverGroup(saved.pid, stopTimeoutMs).then(
          (members) => {
            if (members > 0) {
              logger.warn("stopped processes a dead agent left behind", {
                agent: name,
                pgid: saved.pid,
                members,
              });
            }
          },
          (error: unknown) =>
            logger.error("cannot stop what a dead agent left behind", { agent: name, error }),
        ),
      );
    }
    const [newest, ...extras] = unrecorded;
    if (newest !== undefined) {
      logger.warn("adopting an agent process the previous daemon had not recorded", {
        agent: name,
        pid: newest.stat.pid,
      });
      const ok = tryAdopt(
        runner,
        { pid: newest.stat.pid, startTimeTicks: newest.stat.startTimeTicks, env: newest.env },
        saved?.port,
        startTimeTicksToMs(newest.stat.startTimeTicks),
        stopTimeoutMs,
      );
      for (const extra of extras) {
        stopProcess(name, extra.stat.pid, stopTimeoutMs, "stopping a second process of an agent");
      }
      if (ok) adopted.push(name);
      else restarted.push(name);
      continue;
    }
    if (wanted) restarted.push(name);
  }
  // Restarted on their old ports once every leftover and duplicate is gone.
  await Promise.all(reaps);
  for (const name of restarted) registry.runner(name).autostart();
  return { adopted, restarted };
}

/** `value` when it is a port number (1..65535) or its decimal text; undefined otherwise. */
function validPort(value: unknown): number | undefined {
  const port = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  return typeof port === "number" && Number.isInteger(port) && port >= 1 && port <= 65535
    ? port
    : undefined;
}
