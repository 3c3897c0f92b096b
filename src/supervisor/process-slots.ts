/**
 * The agent's processes by generation: spawning one, watching its exit, terminating its group.
 * Each process gets its own AbortController, aborted when it exits or is terminated or forgotten,
 * so no probe outlives it (DESIGN habit 3). Results go back to the machine as events.
 */
import type { AgentDefinition } from "../config/agent-definition.ts";
import type { ExitRecord } from "../core/agent-state.ts";
import { type BackgroundScope, runInBackground } from "../core/background-task.ts";
import type { LifecycleEvent } from "../core/lifecycle-events.ts";
import type { ProcessTree } from "../platform/process-tree.ts";
import { buildAgentArgv, buildAgentEnv } from "./agent-command.ts";
import { type ProcessHandle, type RunnerDeps, SpawnFailure } from "./runner-deps.ts";

interface Slot {
  readonly handle: ProcessHandle;
  readonly monitors: AbortController;
  forgotten: boolean;
}

/** An aborted signal: terminateGroup sends SIGKILL at once (stop_timeout = 0). */
const AT_ONCE = AbortSignal.abort();

export class ProcessSlots {
  readonly #deps: RunnerDeps;
  readonly #scope: BackgroundScope;
  readonly #logPath: string;
  readonly #dispatch: (event: LifecycleEvent<AgentDefinition>) => void;
  readonly #slots = new Map<number, Slot>();

  constructor(
    deps: RunnerDeps,
    scope: BackgroundScope,
    logPath: string,
    dispatch: (event: LifecycleEvent<AgentDefinition>) => void,
  ) {
    this.#deps = deps;
    this.#scope = scope;
    this.#logPath = logPath;
    this.#dispatch = dispatch;
  }

  /** The abort signal of the probes of process `generation` (aborted when it is gone). */
  signalOf(generation: number): AbortSignal {
    return this.#slots.get(generation)?.monitors.signal ?? AT_ONCE;
  }

  /** The whole tree of process `generation` (undefined: its process group alone). */
  treeOf(generation: number): ProcessTree | undefined {
    return this.#slots.get(generation)?.handle.tree;
  }

  /** Spawns `definition` on `port`; answers spawned or spawnFailed. */
  spawn(generation: number, port: number, definition: AgentDefinition): void {
    const deps = this.#deps;
    runInBackground(
      this.#scope,
      "spawn",
      async () => {
        try {
          const argv = buildAgentArgv(definition, port, deps.host, deps.resolveCommand);
          const env = buildAgentEnv(definition, port, deps.host, deps.baseEnv, deps.ownership);
          return await deps.platform.spawn({
            argv,
            cwd: definition.dir,
            env,
            logPath: this.#logPath,
            name: definition.name,
            logMaxBytes: definition.deployment.logMaxBytes ?? deps.defaults.logMaxBytes,
            logKeep: definition.deployment.logKeep ?? deps.defaults.logKeep,
          });
        } catch (error) {
          return error instanceof SpawnFailure
            ? error
            : new SpawnFailure(
                "SPAWN_FAILED",
                error instanceof Error ? error.message : String(error),
              );
        }
      },
      (result) => {
        if (result instanceof SpawnFailure) {
          this.#dispatch({
            type: "spawnFailed",
            generation,
            reason: result.reason,
            message: result.message,
          });
          return;
        }
        this.attach(generation, result);
        this.#dispatch({
          type: "spawned",
          generation,
          pid: result.pid,
          startTimeTicks: result.startTimeTicks,
          command: result.commandLine,
        });
      },
    );
  }

  /** Watches `handle` as process `generation`: its exit becomes an `exited` event. */
  attach(generation: number, handle: ProcessHandle): void {
    const slot: Slot = { handle, monitors: new AbortController(), forgotten: false };
    this.#slots.set(generation, slot);
    runInBackground(
      this.#scope,
      "watch exit",
      () => handle.exited,
      (exit: ExitRecord) => {
        slot.monitors.abort();
        if (!slot.forgotten) this.#dispatch({ type: "exited", generation, exit });
      },
    );
  }

  /** SIGTERM to the group, the grace, SIGKILL; answers groupGone (or groupStopFailed). */
  terminate(generation: number, pid: number, stopTimeoutMs: number): void {
    const slot = this.#slots.get(generation);
    slot?.monitors.abort();
    const signal = stopTimeoutMs === 0 ? AT_ONCE : this.#deps.forceStop;
    runInBackground(
      {
        ...this.#scope,
        onFailure: (_task, error) =>
          this.#dispatch({
            type: "groupStopFailed",
            generation,
            message: error instanceof Error ? error.message : String(error),
          }),
      },
      "terminate group",
      () =>
        this.#deps.platform.terminateGroup(pid, {
          stopTimeoutMs,
          exited: slot?.handle.exited ?? Promise.resolve(),
          tree: slot?.handle.tree,
          ...(signal !== undefined && { signal }),
        }),
      ({ killed }) => {
        this.#slots.delete(generation);
        this.#dispatch({ type: "groupGone", generation, killed });
      },
    );
  }

  /** Stops watching process `generation` without touching it (detach). */
  forget(generation: number): void {
    const slot = this.#slots.get(generation);
    if (slot === undefined) return;
    slot.forgotten = true;
    slot.monitors.abort();
  }

  forgetAll(): void {
    for (const generation of this.#slots.keys()) this.forget(generation);
  }
}
