import {
  type DefinitionEntry,
  type DiscoveredAgent,
  definitionEntry,
  discoveredName,
} from "../config/agent-definition.ts";
import type { AgentBackend, LogStreamOptions } from "../core/agent-backend.ts";
import { agentNotFound, checkAgentName } from "../core/agent-name.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import { DeployError } from "../core/errors.ts";
import { readLogTail } from "../platform/log-file.ts";
import { followLog } from "../platform/log-follow.ts";
import { AgentRunner } from "./agent-runner.ts";
import { EventHub } from "./event-hub.ts";
import type { RunnerDeps } from "./runner-deps.ts";

/** What the state file records per agent (SPEC §5). */
export interface PersistedAgent {
  readonly desired: "running" | "stopped";
  readonly port: number;
  readonly pid: number;
  readonly startTimeTicks: number | undefined;
  readonly startTimeMs: number | undefined;
  /** The argv the live process was started with: it is adopted only if it still runs that. */
  readonly command?: readonly string[] | undefined;
}

/** Most lines a log tail returns, whatever the request asks. */
export const MAX_TAIL_LINES = 10_000;

/**
 * All agents of the server by name: applies discovery results, routes
 * operations to each agent's runner, and publishes every change on `events`.
 * The local backend of the API (`AgentBackend`).
 */
export class AgentRegistry implements AgentBackend {
  readonly events: EventHub;
  readonly #deps: RunnerDeps;
  readonly #runners = new Map<string, AgentRunner>();
  readonly #onPersistentChange: () => void;
  #closed = false;

  /**
   * @param onPersistentChange called after any change the state file records (coalesce writes there).
   * @param events the change stream; by default one whose listener errors are logged.
   */
  constructor(
    deps: RunnerDeps,
    onPersistentChange: () => void,
    events = new EventHub({
      onListenerError: (error) => deps.logger.error("a change listener failed", { error }),
    }),
  ) {
    this.#deps = deps;
    this.#onPersistentChange = onPersistentChange;
    this.events = events;
  }

  /** Creates, updates and removes runners to match a discovery result. */
  applyDiscovery(agents: readonly DiscoveredAgent[]): void {
    const seen = new Set<string>();
    for (const found of agents) {
      const name = discoveredName(found);
      seen.add(name);
      const update = definitionEntry(found);
      const runner = this.#runners.get(name);
      if (runner) runner.updateDefinition(update);
      else this.#add(name, update);
    }
    for (const [name, runner] of this.#runners) {
      if (!seen.has(name)) runner.updateDefinition({ kind: "removed" });
      this.#dropIfRemovable(runner);
    }
  }

  #add(name: string, initial: DefinitionEntry): void {
    const runner = new AgentRunner(
      name,
      this.#deps,
      {
        published: (previous, status) => {
          this.events.publish({
            kind: "change",
            name,
            previousState: previous.state,
            previousHealth: previous.health,
            status,
            atMs: this.#deps.clock.now(),
          });
          this.#dropIfRemovable(runner);
        },
        persist: () => this.#onPersistentChange(),
      },
      initial,
    );
    this.#runners.set(name, runner);
    const status = runner.status();
    this.events.publish({
      kind: "change",
      name,
      previousState: status.state,
      previousHealth: status.health,
      status,
      atMs: this.#deps.clock.now(),
    });
  }

  #dropIfRemovable(runner: AgentRunner): void {
    if (!runner.removable || this.#runners.get(runner.name) !== runner) return;
    this.#runners.delete(runner.name);
    const status = runner.status();
    this.events.publish({
      kind: "removed",
      name: runner.name,
      previousState: status.state,
      previousHealth: status.health,
      status,
      atMs: this.#deps.clock.now(),
    });
  }

  /** The runner of `name`; DeployError INVALID_AGENT_NAME or AGENT_NOT_FOUND otherwise. */
  runner(name: string): AgentRunner {
    checkAgentName(name);
    const runner = this.#runners.get(name);
    if (!runner) throw agentNotFound(name);
    return runner;
  }

  has(name: string): boolean {
    return this.#runners.has(name);
  }

  #refuseWhenClosed(): void {
    if (this.#closed) {
      throw new DeployError("SERVER_SHUTTING_DOWN", "the server is shutting down");
    }
  }

  deploy(name: string): Promise<AgentStatus> {
    this.#refuseWhenClosed();
    return this.runner(name).deploy();
  }

  async undeploy(name: string): Promise<AgentStatus> {
    this.#refuseWhenClosed();
    return (await this.runner(name).undeploy()).status;
  }

  restart(name: string): Promise<AgentStatus> {
    this.#refuseWhenClosed();
    return this.runner(name).restart();
  }

  status(name: string): AgentStatus {
    return this.runner(name).status();
  }

  /** Every agent sorted by name. */
  list(): AgentStatus[] {
    return [...this.#runners.keys()].sort().map((name) => this.runner(name).status());
  }

  /**
   * The agent's log: its last `tailLines` lines (at most {@link MAX_TAIL_LINES}, read from at
   * most 8 MiB back, across rotated files), then with `follow` new lines until `signal` aborts
   * or the agent is removed, across rotations. Reads files only: memory stays bounded by one
   * read (1 MiB) per follower however fast the agent writes, since the caller pulls each batch.
   */
  async *streamLogs(name: string, options: LogStreamOptions): AsyncIterable<readonly string[]> {
    const logPath = this.runner(name).status().logPath;
    const tail = await readLogTail(logPath, Math.min(options.tailLines, MAX_TAIL_LINES));
    if (tail.lines.length > 0) yield tail.lines;
    if (!options.follow || options.signal.aborted) return;
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    options.signal.addEventListener("abort", onAbort, { once: true });
    const unsubscribe = this.events.subscribe((change) => {
      if (change.kind === "removed" && change.name === name) stop.abort();
    });
    try {
      // From just after the tail's last line, in that very file: nothing lost or repeated
      // between the two, even when the log was rotated in between.
      yield* followLog(logPath, { signal: stop.signal, from: tail.position ?? "start" });
    } finally {
      unsubscribe();
      options.signal.removeEventListener("abort", onAbort);
    }
  }

  /** Starts agents whose definition says autostart, or that the state file says were deployed. */
  autostart(names: Iterable<string> = []): void {
    const wanted = new Set(names);
    for (const runner of this.#runners.values()) {
      const auto = wanted.has(runner.name) || (runner.definition?.deployment.autostart ?? false);
      if (auto && !this.#closed) runner.autostart();
    }
  }

  /** What the state file records: desired state, port, pid and start time per agent. */
  persistentState(): Record<string, PersistedAgent> {
    const out: Record<string, PersistedAgent> = {};
    for (const runner of this.#runners.values()) {
      const proc = runner.process;
      out[runner.name] = {
        desired: runner.desired,
        port: runner.port,
        pid: proc?.pid ?? 0,
        startTimeTicks: proc?.startTimeTicks,
        startTimeMs: runner.startTimeMs,
        ...(proc?.command !== undefined && { command: proc.command }),
      };
    }
    return out;
  }

  /**
   * Refuses new operations and stops supervising, leaving every agent process
   * running for the next daemon to adopt (upgrades; docs/operations.md).
   */
  detach(): void {
    this.#closed = true;
    for (const runner of this.#runners.values()) runner.detach();
  }

  /**
   * Refuses new operations and stops every live agent in parallel, each with its
   * grace. Desired state is kept so the agents come back at the next start.
   * Resolves true when any agent had to be killed. After `detach` it stops nothing.
   */
  async shutdown(): Promise<{ killed: boolean }> {
    this.#closed = true;
    const results = await Promise.all(
      [...this.#runners.values()].map((runner) => runner.stopForShutdown()),
    );
    return { killed: results.some((r) => r) };
  }
}
