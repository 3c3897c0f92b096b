/**
 * Supervises one agent: holds its lifecycle machine (`src/core/lifecycle-reducer.ts`), feeds it
 * every request and every result as an event, and performs the effects it decides, through
 * small executors (process slots, health monitor, leases, timers, waiters). It decides nothing
 * itself. Events are handled one at a time, in order: an event raised while effects run (a slot
 * answer, a requeued operation) waits for the current one to finish.
 */
import path from "node:path";
import type { AgentDefinition, DefinitionEntry } from "../config/agent-definition.ts";
import type { AgentStateName, HealthName } from "../core/agent-state.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import type { BackgroundScope } from "../core/background-task.ts";
import type { Effect, LifecycleEvent } from "../core/lifecycle-events.ts";
import {
  type AgentMachine,
  heldPort,
  initialMachine,
  liveProcess,
} from "../core/lifecycle-model.ts";
import { type Reduction, reduce } from "../core/lifecycle-reducer.ts";
import { statusOf } from "./agent-status-view.ts";
import { type DiscoveryUpdate, toDefinitionUpdate } from "./definition-tracking.ts";
import { HealthMonitor } from "./health-monitor.ts";
import { ProcessSlots } from "./process-slots.ts";
import { ResourceLeases } from "./resource-leases.ts";
import type { ProcessHandle, RunnerDeps } from "./runner-deps.ts";
import { RunnerTimers } from "./runner-timers.ts";
import { RunnerWaiters } from "./runner-waiters.ts";

export type { DiscoveryUpdate as DefinitionUpdate };

/** What a runner tells its registry. */
export interface RunnerHost {
  /** The observable state changed (state, health, reason, removal): publish it. */
  published(previous: { state: AgentStateName; health: HealthName }, status: AgentStatus): void;
  /** The durable facts (desired state, port, pid, start time) changed: save them. */
  persist(): void;
}

type Event = LifecycleEvent<AgentDefinition>;

export class AgentRunner {
  readonly name: string;
  readonly #deps: RunnerDeps;
  readonly #host: RunnerHost;
  readonly #logPath: string;
  #machine: AgentMachine<AgentDefinition>;
  /**
   * The status of one machine value: the machine is immutable and replaced by every reduction,
   * so its status is built once per change, not on every status call (a ListAgents of 100 agents
   * built 100 fresh objects and compared each with the cached encoding's, field by field).
   */
  #status:
    | { readonly machine: AgentMachine<AgentDefinition>; readonly status: AgentStatus }
    | undefined;
  readonly #inbox: Event[] = [];
  #draining = false;
  readonly #waiters: RunnerWaiters;
  readonly #timers: RunnerTimers;
  readonly #processes: ProcessSlots;
  readonly #health: HealthMonitor;
  readonly #leases: ResourceLeases;

  constructor(name: string, deps: RunnerDeps, host: RunnerHost, initial: DefinitionEntry) {
    this.name = name;
    this.#deps = deps;
    this.#host = host;
    this.#logPath = path.join(deps.logDir, `${name}.log`);
    const update = toDefinitionUpdate(initial, deps.defaults, deps.startProbeIntervalMs);
    if (update.kind === "removed") throw new Error("a runner starts from a discovered definition");
    this.#machine = initialMachine(name, update, deps.clock.now());
    const dispatch = (event: Event): void => this.#dispatch(event);
    const scope: BackgroundScope = {
      logger: deps.logger,
      fields: { agent: name },
      onFailure: (task, error) =>
        dispatch({
          type: "internalError",
          message: `${task}: ${error instanceof Error ? error.message : String(error)}`,
        }),
    };
    this.#waiters = new RunnerWaiters(() => this.status());
    this.#timers = new RunnerTimers((timer, token) =>
      dispatch({ type: "timerFired", timer, token }),
    );
    this.#processes = new ProcessSlots(deps, scope, this.#logPath, dispatch);
    this.#health = new HealthMonitor(deps, scope, dispatch);
    this.#leases = new ResourceLeases(name, deps, scope, dispatch);
  }

  get state(): AgentStateName {
    return this.#machine.label.state;
  }

  get desired(): "running" | "stopped" {
    return this.#machine.desired;
  }

  /** The live leader of the agent's group, as state.json records it. */
  get process():
    | { pid: number; startTimeTicks: number | undefined; command: readonly string[] | undefined }
    | undefined {
    const proc = liveProcess(this.#machine.phase);
    return proc && { pid: proc.pid, startTimeTicks: proc.startTimeTicks, command: proc.command };
  }

  get port(): number {
    return heldPort(this.#machine.phase);
  }

  /** When the current (or last) process started (ms since epoch). */
  get startTimeMs(): number | undefined {
    return this.#machine.startTimeMs;
  }

  /** The definition in effect; undefined while INVALID. */
  get definition(): AgentDefinition | undefined {
    return this.#machine.phase.kind === "invalid"
      ? undefined
      : this.#machine.definitions.inEffect?.definition;
  }

  /** The lifecycle machine, for inspection (tests, the state file). */
  get machine(): AgentMachine<AgentDefinition> {
    return this.#machine;
  }

  /** True when the definition is gone and the agent no longer runs: the registry drops it. */
  get removable(): boolean {
    const { phase, definitions } = this.#machine;
    return (
      definitions.latest.kind === "removed" && (phase.kind === "idle" || phase.kind === "invalid")
    );
  }

  /** The agent's full status; the same object until the agent changes. */
  status(): AgentStatus {
    const machine = this.#machine;
    if (this.#status?.machine !== machine) {
      const status = statusOf(machine, {
        logPath: this.#logPath,
        defaultMaxRestarts: this.#deps.defaults.maxRestarts,
      });
      this.#status = { machine, status: Object.freeze(status) };
    }
    return this.#status.status;
  }

  /** A re-discovered definition: a live agent keeps its own until its next start. */
  updateDefinition(next: DiscoveryUpdate): void {
    this.#dispatch({
      type: "definitionChanged",
      update: toDefinitionUpdate(next, this.#deps.defaults, this.#deps.startProbeIntervalMs),
    });
  }

  /** Starts the agent (idempotent) and waits until it is RUNNING and healthy, or failed. */
  deploy(): Promise<AgentStatus> {
    const { id, promise } = this.#waiters.start();
    this.#dispatch({ type: "deploy", waiter: id });
    return promise;
  }

  /** Stops the agent if live (keeping its port), then starts it like deploy(). */
  restart(): Promise<AgentStatus> {
    const { id, promise } = this.#waiters.start();
    this.#dispatch({ type: "restart", waiter: id });
    return promise;
  }

  /** Stops the agent gracefully (idempotent) and waits until it is STOPPED. */
  undeploy(): Promise<{ status: AgentStatus; killed: boolean }> {
    const { id, promise } = this.#waiters.stop();
    this.#dispatch({ type: "undeploy", waiter: id });
    return promise;
  }

  /** Stops the agent for a server shutdown: like undeploy, but the desired state is kept. */
  async stopForShutdown(): Promise<boolean> {
    if (this.#machine.detached) return false;
    const { id, promise } = this.#waiters.stop();
    this.#dispatch({ type: "shutdown", waiter: id });
    return (await promise).killed;
  }

  /** An automatic start (autostart, or deployed when the last daemon stopped). */
  autostart(): void {
    this.#dispatch({ type: "autostart" });
  }

  /**
   * Adopts a live process that survived a daemon restart: RUNNING, reason ADOPTED.
   * @throws DeployError PORT_UNAVAILABLE when another agent leases `port`, RangeError when it is
   *   not a port, Error when the agent is not idle; the agent is then left as it was.
   */
  adopt(handle: ProcessHandle, port: number, startTimeMs: number | undefined): void {
    if (this.#machine.phase.kind !== "idle") {
      throw new Error(`agent ${this.name} is ${this.state}: only an idle agent adopts a process`);
    }
    this.#deps.ports.reserve(this.name, port);
    this.#dispatch({
      type: "adopt",
      pid: handle.pid,
      startTimeTicks: handle.startTimeTicks,
      command: handle.commandLine,
      port,
      startTimeMs,
    });
    const proc = liveProcess(this.#machine.phase);
    if (proc?.pid === handle.pid) this.#processes.attach(proc.generation, handle);
  }

  /**
   * Stops supervising without stopping the process (daemon upgrade): probes and timers end, the
   * process keeps running, state.json keeps its pid for the next daemon to adopt.
   */
  detach(): void {
    this.#dispatch({ type: "detach" });
    this.#timers.cancelAll();
    this.#processes.forgetAll();
  }

  #dispatch(event: Event): void {
    this.#inbox.push(event);
    if (this.#draining) return;
    this.#draining = true;
    try {
      for (let next = this.#inbox.shift(); next !== undefined; next = this.#inbox.shift()) {
        this.#handle(next);
      }
    } finally {
      this.#draining = false;
    }
  }

  #handle(event: Event): void {
    let reduction: Reduction<AgentDefinition>;
    try {
      reduction = reduce(this.#machine, event, this.#deps.clock.now());
    } catch (error) {
      // A bug (an illegal edge): the machine stays as it was, the caller gets INTERNAL.
      this.#deps.logger.error("agent lifecycle refused an event", {
        agent: this.name,
        event: event.type,
        state: this.#machine.label.state,
        error,
      });
      if ("waiter" in event) this.#waiters.crash(event.waiter, error);
      return;
    }
    this.#machine = reduction.state;
    for (const effect of reduction.effects) {
      try {
        this.#perform(effect);
      } catch (error) {
        this.#deps.logger.error("agent effect failed", {
          agent: this.name,
          effect: effect.type,
          error,
        });
        if (effect.type !== "publish" && effect.type !== "persist" && effect.type !== "log") {
          this.#inbox.push({ type: "internalError", message: `${effect.type}: ${String(error)}` });
        }
      }
    }
  }

  #perform(effect: Effect<AgentDefinition>): void {
    switch (effect.type) {
      case "reserveSlot":
        this.#leases.reserveSlot();
        return;
      case "releaseSlot":
        this.#leases.releaseSlot();
        return;
      case "leasePort":
        this.#leases.leasePort(effect.fixedPort);
        return;
      case "releasePort":
        this.#leases.releasePort();
        return;
      case "spawn":
        this.#processes.spawn(effect.generation, effect.port, effect.definition);
        return;
      case "terminateGroup":
        this.#processes.terminate(effect.generation, effect.pid, effect.stopTimeoutMs);
        return;
      case "forgetProcess":
        this.#processes.forget(effect.generation);
        return;
      case "probe":
        this.#health.probe(effect.generation, {
          port: effect.port,
          path: effect.path,
          timeoutMs: effect.timeoutMs,
          signal: this.#processes.signalOf(effect.generation),
          tree: this.#processes.treeOf(effect.generation),
        });
        return;
      case "sampleMemory":
        this.#health.sampleMemory(
          effect.generation,
          effect.pid,
          this.#processes.treeOf(effect.generation),
        );
        return;
      case "armTimer":
        this.#timers.arm(effect.timer, effect.delayMs, effect.token);
        return;
      case "cancelTimer":
        this.#timers.cancel(effect.timer);
        return;
      case "settle":
        this.#waiters.settle(effect.waiters, effect.outcome);
        return;
      case "requeue":
        this.#inbox.push(effect.operation);
        return;
      case "log":
        this.#deps.logger[effect.level](effect.message, effect.fields);
        return;
      case "persist":
        this.#host.persist();
        return;
      case "publish":
        this.#host.published(
          { state: effect.previousState, health: effect.previousHealth },
          this.status(),
        );
        return;
    }
  }
}
