/**
 * Drives the pure lifecycle reducer in tests: a manual clock, the events fed so far, every
 * effect decided, and helpers to pick effects out. No processes, no timers, no I/O.
 */
import { ManualClock } from "../../src/core/clock.ts";
import type {
  Effect,
  LifecycleEvent,
  Outcome,
  TimerName,
} from "../../src/core/lifecycle-events.ts";
import {
  type AgentMachine,
  type DefinitionUpdate,
  initialMachine,
  type LifecycleSettings,
} from "../../src/core/lifecycle-model.ts";
import { reduce } from "../../src/core/lifecycle-reducer.ts";

/** A definition as the tests see it: only a label, to tell versions apart. */
export interface TestDefinition {
  readonly version: string;
}

export const SETTINGS: LifecycleSettings = Object.freeze({
  fixedPort: 0,
  autoRestart: true,
  maxRestarts: 3,
  restartDelayMs: 1_000,
  stableAfterMs: 60_000,
  healthPath: "/status",
  healthCheckIntervalMs: 30_000,
  healthTimeoutMs: 10_000,
  failureThreshold: 3,
  startTimeoutMs: 30_000,
  stopTimeoutMs: 10_000,
  startProbeIntervalMs: 100,
  memoryLimitBytes: undefined,
});

export function validDefinition(
  settings: Partial<LifecycleSettings> = {},
  version = "1",
): DefinitionUpdate<TestDefinition> & { kind: "valid" } {
  return { kind: "valid", definition: { version }, settings: { ...SETTINGS, ...settings } };
}

export function invalidDefinition(
  message = "agent.toml: deployment.port: bad",
): DefinitionUpdate<TestDefinition> & {
  kind: "invalid";
} {
  return { kind: "invalid", configPath: "agent.toml", message, warnings: [] };
}

type Event = LifecycleEvent<TestDefinition>;
type AnyEffect = Effect<TestDefinition>;

export class Driver {
  readonly clock = new ManualClock(1_000_000);
  state: AgentMachine<TestDefinition>;
  /** Effects of the last event. */
  last: readonly AnyEffect[] = [];
  readonly all: AnyEffect[] = [];
  #nextWaiter = 1;

  constructor(
    initial: DefinitionUpdate<TestDefinition> & { kind: "valid" | "invalid" } = validDefinition(),
  ) {
    this.state = initialMachine("a", initial, this.clock.now());
  }

  send(event: Event): readonly AnyEffect[] {
    const { state, effects } = reduce(this.state, event, this.clock.now());
    this.state = state;
    this.last = effects;
    this.all.push(...effects);
    return effects;
  }

  /** Sends an operation with a fresh waiter id and returns the id. */
  op(type: "deploy" | "restart" | "undeploy" | "shutdown"): number {
    const waiter = this.#nextWaiter++;
    this.send({ type, waiter });
    return waiter;
  }

  get publicState(): string {
    return this.state.label.state;
  }

  get phase() {
    return this.state.phase;
  }

  /** The effects of the last event of `type`. */
  effects<T extends AnyEffect["type"]>(type: T): Extract<AnyEffect, { type: T }>[] {
    return this.last.filter((e): e is Extract<AnyEffect, { type: T }> => e.type === type);
  }

  has(type: AnyEffect["type"]): boolean {
    return this.last.some((e) => e.type === type);
  }

  /** The outcome given to `waiter` by any effect so far (undefined: still waiting). */
  outcomeOf(waiter: number): Outcome | undefined {
    for (const effect of this.all) {
      if (effect.type === "settle" && effect.waiters.includes(waiter)) return effect.outcome;
    }
    return undefined;
  }

  /** Generation of the spawn the last event asked for. */
  spawnGeneration(): number {
    const spawn = this.effects("spawn")[0];
    if (spawn === undefined) throw new Error(`no spawn in ${JSON.stringify(this.last)}`);
    return spawn.generation;
  }

  /** Takes a deploy (or autostart) from DISCOVERED through slot, lease and spawn to STARTING. */
  startProcess(pid = 100, port = 8100): number {
    if (this.has("reserveSlot")) this.send({ type: "slotReserved" });
    if (this.has("leasePort")) this.send({ type: "leaseGranted", port });
    const generation = this.spawnGeneration();
    this.send({ type: "spawned", generation, pid, startTimeTicks: 5 });
    return generation;
  }

  /** startProcess, then the first healthy probe: RUNNING. */
  run(pid = 100, port = 8100): number {
    const generation = this.startProcess(pid, port);
    this.send({ type: "probed", generation, ok: true, message: "HTTP 200" });
    return generation;
  }

  /** The process `generation` exits with `code`. */
  exit(generation: number, code: number | null = 1, signal: string | null = null): void {
    this.send({ type: "exited", generation, exit: { code, signal, atMs: this.clock.now() } });
  }

  /** Fires the timer `timer` with the token the last arming of it gave. */
  fire(timer: TimerName): void {
    const armed = [...this.all]
      .reverse()
      .find(
        (e): e is Extract<AnyEffect, { type: "armTimer" }> =>
          e.type === "armTimer" && e.timer === timer,
      );
    if (armed === undefined) throw new Error(`timer ${timer} was never armed`);
    this.clock.advance(armed.delayMs);
    this.send({ type: "timerFired", timer, token: armed.token });
  }
}
