import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { AgentDefinition } from "../config/agent-definition.ts";
import {
  type AgentStateName,
  type ExitRecord,
  type HealthName,
  isLive,
  type Lifecycle,
  transition,
} from "../core/agent-state.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import { DeployError } from "../core/errors.ts";
import {
  decideAfterFailure,
  type FailureCause,
  restartCountAfterStableRun,
} from "../core/restart-policy.ts";
import { buildAgentArgv, buildAgentEnv } from "./agent-command.ts";
import { type ProcessHandle, type RunnerDeps, SpawnFailure } from "./runner-deps.ts";
import { isStartOutcome, outcomeError } from "./start-outcome.ts";

/** `Agent.host` of every local agent: this machine (read once; it does not change under us). */
const HOST_NAME = os.hostname();

type InvalidDefinition = {
  readonly kind: "invalid";
  readonly configPath: string;
  readonly message: string;
  readonly warnings: readonly string[];
};

/** A discovery result for one agent name. */
export type DefinitionUpdate =
  | { readonly kind: "valid"; readonly definition: AgentDefinition }
  | InvalidDefinition
  | { readonly kind: "removed" };

/** Called after every change of state or health, with what it was before. */
export type RunnerChangeListener = (
  previous: { state: AgentStateName; health: HealthName },
  status: AgentStatus,
) => void;

/** What the runner knows about its current process; replaced on every spawn. */
interface ProcessSlot {
  readonly generation: number;
  readonly handle: ProcessHandle;
  /** Aborted when this process exits or is being replaced: stops its probes and timers. */
  readonly monitors: AbortController;
  /** Resolves when the process has exited and the exit has been handled. */
  readonly gone: Promise<void>;
  readonly manualStart: boolean;
  /** Set once the process passed its first probe. */
  started: boolean;
  /** Set while the runner itself terminates the process, so its exit is not a crash. */
  terminating: boolean;
  consecutiveFailures: number;
  healthySinceMs: number | undefined;
}

interface OutcomeWaiter {
  resolve(status: AgentStatus): void;
  reject(error: Error): void;
}

/**
 * Supervises one agent: owns its lifecycle, its process, probes and restarts.
 * Client operations run one at a time through a queue; process events check the
 * generation of the process they belong to and are dropped when it is stale.
 */
export class AgentRunner {
  readonly name: string;
  readonly #deps: RunnerDeps;
  readonly #onChange: RunnerChangeListener;
  /** The definition in effect for the current (or next) process. */
  #definition: AgentDefinition | undefined;
  #invalid: InvalidDefinition | undefined;
  /** The last discovered definition; takes effect when the agent is not live. */
  #latest: DefinitionUpdate;
  #definitionRemoved = false;
  #lifecycle: Lifecycle;
  #health: HealthName = "UNKNOWN";
  #healthMessage = "";
  #lastHealthCheckMs: number | undefined;
  #memoryBytes = 0;
  #port = 0;
  #restartCount = 0;
  #startTimeMs: number | undefined;
  /** `<logDir>/<name>.log`: fixed for the runner's life. */
  readonly #logPath: string;
  #lastExit: ExitRecord | undefined;
  #nextRestartAtMs: number | undefined;
  #backoffTimer: NodeJS.Timeout | undefined;
  #generation = 0;
  #process: ProcessSlot | undefined;
  /** What clients asked for last: kept across daemon restarts by the state file. */
  #desired: "running" | "stopped" = "stopped";
  #queue: Promise<unknown> = Promise.resolve();
  readonly #waiters = new Set<OutcomeWaiter>();

  constructor(
    name: string,
    deps: RunnerDeps,
    onChange: RunnerChangeListener,
    initial: DefinitionUpdate & { kind: "valid" | "invalid" },
  ) {
    this.name = name;
    this.#deps = deps;
    this.#logPath = path.join(deps.logDir, `${name}.log`);
    this.#onChange = onChange;
    this.#latest = initial;
    const now = deps.clock.now();
    if (initial.kind === "valid") {
      this.#definition = initial.definition;
      this.#lifecycle = { state: "DISCOVERED", reason: "", message: "", sinceMs: now };
    } else {
      this.#invalid = initial as InvalidDefinition;
      this.#lifecycle = {
        state: "INVALID",
        reason: "AGENT_CONFIG_INVALID",
        message: initial.message,
        sinceMs: now,
      };
    }
  }

  get state(): AgentStateName {
    return this.#lifecycle.state;
  }

  get desired(): "running" | "stopped" {
    return this.#desired;
  }

  get process(): { pid: number; startTimeTicks: number | undefined } | undefined {
    const handle = this.#process?.handle;
    return handle && { pid: handle.pid, startTimeTicks: handle.startTimeTicks };
  }

  get port(): number {
    return this.#port;
  }

  /** When the current process started (ms since epoch); undefined without one. */
  get startTimeMs(): number | undefined {
    return this.#startTimeMs;
  }

  /** The definition in effect; undefined while INVALID. */
  get definition(): AgentDefinition | undefined {
    return this.#definition;
  }

  /** The agent's full status now. */
  status(): AgentStatus {
    const def = this.#definition;
    const lc = this.#lifecycle;
    return {
      name: this.name,
      state: lc.state,
      health: this.#health,
      port: this.#port,
      pid: this.#process?.handle.pid ?? 0,
      restartCount: this.#restartCount,
      maxRestarts: def?.deployment.maxRestarts ?? this.#deps.defaults.maxRestarts,
      configPath: def?.configPath ?? this.#invalid?.configPath ?? "",
      version: def?.version ?? "",
      description: def?.description ?? "",
      capabilities: def?.capabilities ?? [],
      startTimeMs: this.#startTimeMs,
      stateReason: lc.reason,
      stateMessage: lc.message,
      stateSinceMs: lc.sinceMs,
      lastExit: this.#lastExit,
      nextRestartAtMs: lc.state === "BACKOFF" ? this.#nextRestartAtMs : undefined,
      lastHealthCheckMs: this.#lastHealthCheckMs,
      healthMessage: this.#healthMessage,
      memoryBytes: this.#memoryBytes,
      warnings: def?.warnings ?? this.#invalid?.warnings ?? [],
      definitionRemoved: this.#definitionRemoved,
      logPath: this.#logPath,
      host: HOST_NAME,
      instance: "",
      installedPackage: def?.installedPackage,
    };
  }

  /**
   * Records a re-discovered definition. A live agent keeps the definition it was
   * started with until its next start; a non-live one takes it now.
   */
  updateDefinition(next: DefinitionUpdate): void {
    const wasRemoved = this.#definitionRemoved;
    this.#latest = next;
    this.#definitionRemoved = next.kind === "removed";
    if (!isLive(this.state)) this.#applyLatestDefinition();
    else if (this.#definitionRemoved !== wasRemoved) this.#emit(this.state, this.#health);
  }

  /** Makes the latest discovered definition the one in effect (agent not live). */
  #applyLatestDefinition(): void {
    const next = this.#latest;
    if (next.kind === "valid") {
      this.#definition = next.definition;
      this.#invalid = undefined;
      if (this.state === "INVALID") this.#setState("DISCOVERED", "DEFINITION_FIXED", "");
    } else if (next.kind === "invalid") {
      this.#definition = undefined;
      this.#invalid = next;
      this.#setState("INVALID", "AGENT_CONFIG_INVALID", next.message);
    }
  }

  /** True when the definition is gone and the agent no longer runs: the registry drops it. */
  get removable(): boolean {
    return this.#definitionRemoved && !isLive(this.state);
  }

  /** Starts the agent (idempotent) and waits until it is RUNNING and healthy, or failed. */
  async deploy(): Promise<AgentStatus> {
    this.#desired = "running";
    // The queue is held only while spawning, so an Undeploy can interrupt a slow start.
    const joined = await this.#enqueue(async () => {
      if (isLive(this.state)) return this.state === "STARTING";
      this.#restartCount = 0;
      await this.#start(true);
      return true;
    });
    return joined ? this.#awaitOutcome() : this.status();
  }

  /** Stops the agent gracefully (idempotent) and waits until it is STOPPED. */
  undeploy(reason = "STOP_REQUESTED"): Promise<{ status: AgentStatus; killed: boolean }> {
    this.#desired = "stopped";
    this.#cancelBackoff();
    return this.#enqueue(async () => {
      const killed = await this.#stop(reason, true);
      return { status: this.status(), killed };
    });
  }

  /** Stops the agent for a server shutdown: like undeploy, but the desired state is kept. */
  stopForShutdown(): Promise<boolean> {
    this.#cancelBackoff();
    return this.#enqueue(() => this.#stop("SERVER_SHUTDOWN", true));
  }

  /**
   * Stops supervising without stopping the process (daemon upgrade): probes and
   * timers end, the process keeps running and is adopted by the next daemon.
   */
  detach(): void {
    this.#cancelBackoff();
    this.#process?.monitors.abort();
  }

  /** Stops the agent if live (keeping its port), then starts it like deploy(). */
  async restart(): Promise<AgentStatus> {
    this.#desired = "running";
    this.#cancelBackoff();
    await this.#enqueue(async () => {
      await this.#stop("RESTART_REQUESTED", false);
      this.#restartCount = 0;
      try {
        await this.#start(true);
      } catch (error) {
        if (!isLive(this.state)) this.#releaseResources();
        throw error;
      }
    });
    return this.#awaitOutcome();
  }

  /**
   * Starts the agent as an automatic start (autostart, or re-start after a daemon
   * restart): failures go through the restart policy instead of failing at once.
   */
  autostart(): Promise<void> {
    this.#desired = "running";
    return this.#enqueue(async () => {
      if (isLive(this.state) || this.state === "INVALID") return;
      await this.#start(false).catch((error: unknown) => {
        this.#deps.logger.warn("autostart failed", { agent: this.name, error: String(error) });
      });
    });
  }

  /** Adopts a process that survived a daemon restart: RUNNING with reason ADOPTED. */
  adopt(handle: ProcessHandle, port: number, startTimeMs: number | undefined): void {
    this.#desired = "running";
    this.#deps.slots.tryReserve(this.name);
    this.#deps.ports.reserve(this.name, port);
    this.#port = port;
    this.#startTimeMs = startTimeMs;
    const slot = this.#attach(handle, false);
    slot.started = true;
    this.#health = "UNKNOWN";
    this.#setState(
      "RUNNING",
      "ADOPTED",
      `adopted live process ${handle.pid} after a server restart`,
    );
    // Probe at once: the adopted process has not been checked by this daemon yet.
    void this.#monitorLiveness(slot, true);
  }

  #enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(operation, operation);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #emit(previousState: AgentStateName, previousHealth: HealthName): void {
    const status = this.status();
    this.#onChange({ state: previousState, health: previousHealth }, status);
    this.#settleWaiters(status);
  }

  #setState(state: AgentStateName, reason: string, message: string): void {
    const previous = this.#lifecycle.state;
    const previousHealth = this.#health;
    this.#lifecycle = transition(this.#lifecycle, state, reason, message, this.#deps.clock.now());
    if (!isLive(state) || state === "STARTING") {
      this.#health = "UNKNOWN";
      this.#memoryBytes = 0;
    }
    this.#emit(previous, previousHealth);
  }

  #setHealth(health: HealthName): void {
    if (health === this.#health) return;
    const previous = this.#health;
    this.#health = health;
    this.#emit(this.state, previous);
  }

  /** Settles at once when the current status is an outcome, else on the next one. */
  #awaitOutcome(): Promise<AgentStatus> {
    const status = this.status();
    const error = outcomeError(status);
    if (error) return Promise.reject(error);
    if (isStartOutcome(status)) return Promise.resolve(status);
    return new Promise((resolve, reject) => {
      this.#waiters.add({ resolve, reject });
    });
  }

  /** Resolves start waiters on RUNNING+HEALTHY, rejects them on a terminal state. */
  #settleWaiters(status: AgentStatus): void {
    if (this.#waiters.size === 0) return;
    const error = outcomeError(status);
    if (error === undefined && !isStartOutcome(status)) return;
    for (const waiter of this.#waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve(status);
    }
    this.#waiters.clear();
  }

  /** Leases slot and port, spawns, and hands the process to the start monitor. */
  async #start(manual: boolean): Promise<void> {
    if (this.state !== "BACKOFF") this.#applyLatestDefinition();
    const def = this.#definition;
    if (def === undefined) {
      throw new DeployError(
        "AGENT_CONFIG_INVALID",
        this.#invalid?.message ?? `agent ${this.name} has no definition`,
        { agent: this.name },
      );
    }
    const fromBackoff = this.state === "BACKOFF";
    if (!fromBackoff && !this.#deps.slots.tryReserve(this.name)) {
      throw new DeployError(
        "MAX_AGENTS_REACHED",
        `cannot start ${this.name}: max_agents (${this.#deps.slots.limit}) agents are live`,
        { agent: this.name },
      );
    }
    try {
      if (this.#port === 0) {
        this.#port =
          def.deployment.port !== 0
            ? await this.#deps.ports.leaseFixed(this.name, def.deployment.port)
            : await this.#deps.ports.lease(this.name);
      }
    } catch (error) {
      this.#deps.slots.release(this.name);
      throw error;
    }
    const argv = buildAgentArgv(def, this.#port, this.#deps.host, this.#deps.resolveCommand);
    const env = buildAgentEnv(
      def,
      this.#port,
      this.#deps.host,
      this.#deps.baseEnv,
      this.#deps.stateDir,
    );
    let handle: ProcessHandle;
    try {
      handle = await this.#deps.platform.spawn({
        argv,
        cwd: def.dir,
        env,
        logPath: this.#logPath,
      });
    } catch (error) {
      const failure =
        error instanceof SpawnFailure ? error : new SpawnFailure("SPAWN_FAILED", String(error));
      this.#releaseResources();
      this.#desired = "stopped";
      this.#setState("FAILED", failure.reason, failure.message);
      throw new DeployError("AGENT_START_FAILED", `${this.name}: ${failure.message}`, {
        agent: this.name,
        state_reason: failure.reason,
      });
    }
    this.#startTimeMs = this.#deps.clock.now();
    const slot = this.#attach(handle, manual);
    this.#setState("STARTING", manual ? "START_REQUESTED" : "AUTO_RESTART", `pid ${handle.pid}`);
    void this.#monitorStart(slot, def);
  }

  #attach(handle: ProcessHandle, manualStart: boolean): ProcessSlot {
    this.#generation += 1;
    const monitors = new AbortController();
    let markGone: () => void = () => undefined;
    const gone = new Promise<void>((resolve) => {
      markGone = resolve;
    });
    const slot: ProcessSlot = {
      generation: this.#generation,
      handle,
      monitors,
      gone,
      manualStart,
      started: false,
      terminating: false,
      consecutiveFailures: 0,
      healthySinceMs: undefined,
    };
    this.#process = slot;
    void handle.exited.then((exit) => {
      monitors.abort();
      this.#onExit(slot, exit);
      markGone();
    });
    return slot;
  }

  #isCurrent(slot: ProcessSlot): boolean {
    return this.#process?.generation === slot.generation;
  }

  #onExit(slot: ProcessSlot, exit: ExitRecord): void {
    if (!this.#isCurrent(slot)) return;
    this.#lastExit = exit;
    this.#process = undefined;
    if (slot.terminating || this.state === "STOPPING" || this.state === "BACKOFF") return;
    this.#deps.logger.info("agent process exited", {
      agent: this.name,
      pid: slot.handle.pid,
      code: exit.code,
      signal: exit.signal,
    });
    this.#handleFailure(slot, { kind: "exit", code: exit.code, signal: exit.signal });
  }

  /** Applies the restart policy to a failure of the current process. */
  #handleFailure(slot: ProcessSlot, cause: FailureCause): void {
    const def = this.#definition;
    this.#restartCount = restartCountAfterStableRun(
      this.#restartCount,
      slot.healthySinceMs,
      this.#deps.clock.now(),
      def?.deployment.stableAfterMs ?? Number.POSITIVE_INFINITY,
    );
    const decision = decideAfterFailure({
      cause,
      duringStart: !slot.started,
      manualStart: slot.manualStart,
      autoRestart: def?.deployment.autoRestart ?? this.#deps.defaults.autoRestart,
      restartCount: this.#restartCount,
      maxRestarts: def?.deployment.maxRestarts ?? this.#deps.defaults.maxRestarts,
      restartDelayMs: def?.deployment.restartDelayMs ?? 1000,
    });
    const processAlive = this.#isCurrent(slot);
    switch (decision.action) {
      case "keep":
        return;
      case "restart": {
        // The old process (if any) is terminated in the background; the new start
        // waits for both the backoff delay and the old group being gone.
        const terminated = processAlive ? this.#terminate(slot) : this.#reapGroup(slot);
        this.#nextRestartAtMs = this.#deps.clock.now() + decision.delayMs;
        this.#setState("BACKOFF", decision.reason, decision.message);
        this.#scheduleRestart(decision.delayMs, terminated);
        return;
      }
      case "stopped":
      case "failed": {
        // The port is released only once the whole group is gone (grandchildren too).
        const finish = (): void => {
          if (this.state === "STOPPING" || !isLive(this.state)) return;
          this.#releaseResources();
          this.#desired = "stopped";
          const state = decision.action === "stopped" ? "STOPPED" : "FAILED";
          this.#setState(state, decision.reason, decision.message);
          this.#applyLatestDefinition();
        };
        void (processAlive ? this.#terminate(slot) : this.#reapGroup(slot)).then(finish);
        return;
      }
    }
  }

  #scheduleRestart(delayMs: number, terminated: Promise<unknown>): void {
    this.#cancelBackoff();
    const timer = setTimeout(() => {
      if (this.#backoffTimer !== timer) return;
      this.#backoffTimer = undefined;
      void this.#enqueue(async () => {
        await terminated;
        if (this.state !== "BACKOFF" || this.#desired !== "running") return;
        this.#restartCount += 1;
        await this.#start(false).catch((error: unknown) => {
          // Slot/port errors while restarting: give up rather than spin.
          if (this.state === "BACKOFF") {
            this.#releaseResources();
            const message = error instanceof Error ? error.message : String(error);
            const reason = error instanceof DeployError ? error.code : "RESTART_FAILED";
            this.#setState("FAILED", reason, message);
          }
        });
      });
    }, delayMs);
    timer.unref();
    this.#backoffTimer = timer;
  }

  #cancelBackoff(): void {
    if (this.#backoffTimer !== undefined) clearTimeout(this.#backoffTimer);
    this.#backoffTimer = undefined;
  }

  /** Terminates the slot's process group; resolves after its exit was handled. */
  async #terminate(slot: ProcessSlot): Promise<boolean> {
    slot.terminating = true;
    slot.monitors.abort();
    const stopTimeoutMs = this.#definition?.deployment.stopTimeoutMs ?? 10_000;
    const killed = await this.#killGroup(slot, stopTimeoutMs);
    await slot.gone;
    return killed;
  }

  /** Kills what is left of a dead leader's group (grandchildren may hold the port). */
  #reapGroup(slot: ProcessSlot): Promise<boolean> {
    return this.#killGroup(slot, this.#definition?.deployment.stopTimeoutMs ?? 10_000);
  }

  async #killGroup(slot: ProcessSlot, stopTimeoutMs: number): Promise<boolean> {
    const { killed } = await this.#deps.platform.terminateGroup(slot.handle.pid, {
      stopTimeoutMs,
      exited: slot.handle.exited,
      ...(this.#deps.forceStop !== undefined && { signal: this.#deps.forceStop }),
    });
    return killed;
  }

  /**
   * Stops whatever runs now: STOPPING until the group is gone, then STOPPED.
   * Returns true when SIGKILL was needed. `release` false keeps the port (Restart).
   */
  async #stop(reason: string, release: boolean): Promise<boolean> {
    this.#cancelBackoff();
    if (!isLive(this.state)) return false;
    const slot = this.#process;
    this.#setState("STOPPING", reason, slot ? `stopping pid ${slot.handle.pid}` : "");
    const killed = slot ? await this.#terminate(slot) : false;
    if (release) this.#releaseResources();
    this.#setState(
      "STOPPED",
      killed ? "KILLED_AFTER_GRACE" : "STOPPED",
      killed ? "did not exit within stop_timeout; killed with SIGKILL" : "stopped on request",
    );
    if (release) this.#applyLatestDefinition();
    return killed;
  }

  #releaseResources(): void {
    this.#deps.ports.release(this.name);
    this.#deps.slots.release(this.name);
    this.#port = 0;
    this.#nextRestartAtMs = undefined;
  }

  /** Probes about every 100 ms until the first 2xx or start_timeout. */
  async #monitorStart(slot: ProcessSlot, def: AgentDefinition): Promise<void> {
    const { signal } = slot.monitors;
    const d = def.deployment;
    if (d.healthPath === "") {
      this.#markStarted(slot, "process alive (HTTP probing disabled)");
      return;
    }
    const deadlineMs = this.#deps.clock.now() + d.startTimeoutMs;
    const intervalMs = this.#deps.startProbeIntervalMs ?? 100;
    while (!signal.aborted) {
      const remainingMs = deadlineMs - this.#deps.clock.now();
      if (remainingMs <= 0) {
        if (this.#isCurrent(slot) && this.state === "STARTING") {
          this.#handleFailure(slot, { kind: "start-timeout" });
        }
        return;
      }
      const result = await this.#probe(slot, Math.min(d.healthTimeoutMs, remainingMs));
      if (signal.aborted || !this.#isCurrent(slot) || this.state !== "STARTING") return;
      if (result.ok) {
        this.#markStarted(slot, result.message);
        return;
      }
      await delay(intervalMs, undefined, { signal }).catch(() => undefined);
    }
  }

  #markStarted(slot: ProcessSlot, message: string): void {
    slot.started = true;
    slot.healthySinceMs = this.#deps.clock.now();
    this.#healthMessage = message;
    this.#health = "HEALTHY";
    this.#setState("RUNNING", "STARTED", message);
    void this.#monitorLiveness(slot);
  }

  /** Liveness probes and memory checks every health_check_interval, never overlapping. */
  async #monitorLiveness(slot: ProcessSlot, probeFirst = false): Promise<void> {
    const { signal } = slot.monitors;
    const def = this.#definition;
    if (def === undefined) return;
    const d = def.deployment;
    const intervalMs = d.healthCheckIntervalMs ?? this.#deps.defaults.healthCheckIntervalMs;
    let wait = !probeFirst;
    while (!signal.aborted) {
      if (wait) await delay(intervalMs, undefined, { signal }).catch(() => undefined);
      wait = true;
      if (signal.aborted || !this.#isCurrent(slot)) return;
      if (this.#checkMemory(slot, def)) return;
      if (d.healthPath === "") continue;
      const result = await this.#probe(slot, d.healthTimeoutMs);
      if (signal.aborted || !this.#isCurrent(slot) || this.state !== "RUNNING") return;
      if (result.ok) {
        slot.consecutiveFailures = 0;
        if (this.#health !== "HEALTHY") slot.healthySinceMs = this.#deps.clock.now();
        this.#restartCount = restartCountAfterStableRun(
          this.#restartCount,
          slot.healthySinceMs,
          this.#deps.clock.now(),
          d.stableAfterMs,
        );
        this.#setHealth("HEALTHY");
        continue;
      }
      slot.consecutiveFailures += 1;
      slot.healthySinceMs = undefined;
      if (slot.consecutiveFailures >= d.failureThreshold && this.#health !== "UNHEALTHY") {
        this.#setHealth("UNHEALTHY");
        this.#handleFailure(slot, { kind: "unhealthy" });
      }
    }
  }

  /** Measures the group's memory; true when it is over the limit and a restart began. */
  #checkMemory(slot: ProcessSlot, def: AgentDefinition): boolean {
    try {
      this.#memoryBytes = this.#deps.platform.groupResidentBytes(slot.handle.pid);
    } catch (error) {
      this.#deps.logger.debug("memory measurement failed", {
        agent: this.name,
        error: String(error),
      });
      return false;
    }
    const limit = def.resources.memoryLimitBytes;
    if (limit === undefined || this.#memoryBytes <= limit) return false;
    this.#handleFailure(slot, { kind: "memory" });
    return true;
  }

  async #probe(slot: ProcessSlot, timeoutMs: number): Promise<{ ok: boolean; message: string }> {
    const def = this.#definition;
    const result = await this.#deps.platform
      .probe({
        host: this.#deps.host,
        port: this.#port,
        path: def?.deployment.healthPath ?? "/status",
        timeoutMs,
        signal: slot.monitors.signal,
      })
      .catch((error: unknown) => ({ ok: false, message: String(error) }));
    if (this.#isCurrent(slot)) {
      this.#lastHealthCheckMs = this.#deps.clock.now();
      this.#healthMessage = result.message;
    }
    return result;
  }
}
