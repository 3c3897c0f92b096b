/**
 * The reducer against a simulated world, over many seeded random schedules: requests at any
 * moment, results of effects delivered in any order, crashes, timers, definition edits. After
 * every event the machine's invariants hold; at the end, with the world behaving and the agent
 * undeployed, every caller has had exactly one answer and nothing is left running or leased.
 */
import { describe, expect, it } from "vitest";
import { isLive } from "../../src/core/agent-state.ts";
import type { Effect, LifecycleEvent, TimerName } from "../../src/core/lifecycle-events.ts";
import {
  type AgentMachine,
  heldPort,
  holdsSlot,
  initialMachine,
  publicState,
} from "../../src/core/lifecycle-model.ts";
import { reduce } from "../../src/core/lifecycle-reducer.ts";
import { invalidDefinition, type TestDefinition, validDefinition } from "./lifecycle-driver.ts";

type Event = LifecycleEvent<TestDefinition>;

/** A small deterministic PRNG (mulberry32), so a failing seed can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class World {
  readonly rand: () => number;
  state: AgentMachine<TestDefinition>;
  nowMs = 0;
  /** Results of effects not delivered yet. */
  pending: Event[] = [];
  readonly inbox: Event[] = [];
  readonly timers = new Map<TimerName, number>();
  /** Processes by generation: the leader, and its group (which outlives it until reaped). */
  readonly processes = new Map<number, { alive: boolean; group: boolean }>();
  slotHeld = false;
  portLeased = false;
  readonly answers = new Map<number, number>();
  readonly waiters = new Set<number>();
  behaving = false;
  #nextWaiter = 1;
  #nextPid = 1000;

  constructor(seed: number) {
    this.rand = random(seed);
    this.state = initialMachine("a", validDefinition({ startTimeoutMs: 5_000 }), 0);
  }

  chance(p: number): boolean {
    return this.rand() < p;
  }

  pick<T>(items: readonly T[]): T | undefined {
    return items[Math.floor(this.rand() * items.length)];
  }

  send(event: Event): void {
    this.inbox.push(event);
    for (let next = this.inbox.shift(); next !== undefined; next = this.inbox.shift()) {
      this.nowMs += 1;
      if (next.type === "groupGone") {
        const proc = this.processes.get(next.generation);
        if (proc !== undefined) proc.group = false;
      }
      const { state, effects } = reduce(this.state, next, this.nowMs);
      this.state = state;
      this.check();
      for (const effect of effects) this.perform(effect);
    }
  }

  op(type: "deploy" | "restart" | "undeploy" | "shutdown"): void {
    const waiter = this.#nextWaiter++;
    this.waiters.add(waiter);
    this.send({ type, waiter });
  }

  perform(effect: Effect<TestDefinition>): void {
    switch (effect.type) {
      case "reserveSlot":
        if (!this.behaving && this.chance(0.1)) {
          const failure = { code: "MAX_AGENTS_REACHED" as const, message: "full", metadata: {} };
          this.inbox.push({ type: "slotRefused", failure });
        } else {
          this.slotHeld = true;
          this.inbox.push({ type: "slotReserved" });
        }
        return;
      case "releaseSlot":
        this.slotHeld = false;
        return;
      case "leasePort":
        if (!this.behaving && this.chance(0.1)) {
          const failure = { code: "NO_FREE_PORT" as const, message: "none", metadata: {} };
          this.pending.push({ type: "leaseRefused", failure });
        } else {
          this.portLeased = true;
          this.pending.push({ type: "leaseGranted", port: effect.fixedPort || 8100 });
        }
        return;
      case "releasePort":
        // Never reported free while a member of a group may still hold it.
        expect(this.liveGroups()).toEqual([]);
        this.portLeased = false;
        return;
      case "spawn":
        if (!this.behaving && this.chance(0.05)) {
          this.pending.push({
            type: "spawnFailed",
            generation: effect.generation,
            reason: "SPAWN_FAILED",
            message: "no",
          });
        } else {
          this.processes.set(effect.generation, { alive: true, group: true });
          const pid = this.#nextPid++;
          this.pending.push({
            type: "spawned",
            generation: effect.generation,
            pid,
            startTimeTicks: 1,
            command: ["agent", String(pid)],
          });
        }
        return;
      case "terminateGroup": {
        const proc = this.processes.get(effect.generation);
        if (proc?.alive) {
          proc.alive = false;
          this.pending.push({
            type: "exited",
            generation: effect.generation,
            exit: { code: null, signal: "SIGTERM", atMs: this.nowMs },
          });
        }
        this.pending.push({
          type: "groupGone",
          generation: effect.generation,
          killed: this.chance(0.2),
        });
        return;
      }
      case "probe":
        this.pending.push({
          type: "probed",
          generation: effect.generation,
          ok: this.behaving || this.chance(0.8),
          message: "probe",
        });
        return;
      case "sampleMemory":
        this.inbox.push({ type: "memorySampled", generation: effect.generation, bytes: 10 });
        return;
      case "armTimer":
        this.timers.set(effect.timer, effect.token);
        return;
      case "cancelTimer":
        this.timers.delete(effect.timer);
        return;
      case "settle":
        for (const waiter of effect.waiters) {
          const count = (this.answers.get(waiter) ?? 0) + 1;
          expect(count, `answers to waiter ${waiter}`).toBe(1);
          this.answers.set(waiter, count);
        }
        return;
      case "requeue":
        this.inbox.push(effect.operation);
        return;
      default:
        return;
    }
  }

  /** Invariants after every event. */
  check(): void {
    const { phase, label } = this.state;
    expect(label.state).toBe(publicState(phase));
    if (heldPort(phase) !== 0) {
      expect(isLive(label.state) || phase.kind === "acquiring").toBe(true);
    }
    if (holdsSlot(phase)) expect(this.slotHeld).toBe(true);
    // Health is known only of a process that is probed: RUNNING (and STOPPING, which follows it).
    if (phase.kind !== "running" && phase.kind !== "stopping") {
      expect(this.state.health).toBe("UNKNOWN");
    }
    if (phase.kind === "idle" || phase.kind === "invalid") {
      // "No process" is said only once every process group is really gone.
      expect(this.liveGroups()).toEqual([]);
    }
  }

  liveGroups(): number[] {
    return [...this.processes.entries()].filter(([, p]) => p.group).map(([g]) => g);
  }

  deliverOne(): boolean {
    if (this.pending.length === 0) return false;
    const index = Math.floor(this.rand() * this.pending.length);
    const [event] = this.pending.splice(index, 1);
    if (event !== undefined) this.send(event);
    return true;
  }

  fireOne(exclude: readonly TimerName[] = []): boolean {
    const names = [...this.timers.keys()].filter((name) => !exclude.includes(name));
    const timer = this.pick(names);
    if (timer === undefined) return false;
    const token = this.timers.get(timer) ?? 0;
    this.timers.delete(timer);
    this.send({ type: "timerFired", timer, token });
    return true;
  }

  crashOne(): void {
    const live = [...this.processes.entries()].filter(([, p]) => p.alive);
    const chosen = this.pick(live);
    if (chosen === undefined) return;
    chosen[1].alive = false;
    // A crash: the leader exits; its group lives on until the supervisor reaps it.
    this.pending.push({
      type: "exited",
      generation: chosen[0],
      exit: { code: this.chance(0.2) ? 0 : 3, signal: null, atMs: this.nowMs },
    });
  }

  step(): void {
    const r = this.rand();
    if (r < 0.35) this.deliverOne();
    else if (r < 0.5) this.fireOne();
    else if (r < 0.75)
      this.op(this.pick(["deploy", "restart", "undeploy", "deploy"] as const) ?? "deploy");
    else if (r < 0.85) this.crashOne();
    else if (r < 0.9) this.op("shutdown");
    else {
      const update = this.chance(0.3)
        ? invalidDefinition()
        : validDefinition(
            { fixedPort: this.chance(0.3) ? 9000 : 0, startTimeoutMs: 5_000 },
            String(this.nowMs),
          );
      this.send({ type: "definitionChanged", update });
    }
  }

  /** The world behaves from now on; runs until nothing but liveness rounds is left. */
  settleDown(): void {
    this.behaving = true;
    this.send({ type: "definitionChanged", update: validDefinition({ startTimeoutMs: 5_000 }) });
    for (let i = 0; i < 10_000; i++) {
      if (!this.deliverOne() && !this.fireOne(["liveness"])) return;
    }
    throw new Error("the world did not settle");
  }
}

describe("lifecycle reducer in a simulated world", () => {
  it("keeps its invariants and answers every caller over random schedules", () => {
    for (let seed = 1; seed <= 250; seed++) {
      const world = new World(seed);
      try {
        for (let i = 0; i < 150; i++) world.step();
        world.settleDown();
        world.op("undeploy");
        world.settleDown();
        expect(["DISCOVERED", "STOPPED", "FAILED"]).toContain(world.state.label.state);
        expect(world.state.desired).toBe("stopped");
        expect(world.liveGroups()).toEqual([]);
        expect({ slot: world.slotHeld, port: world.portLeased }).toEqual({
          slot: false,
          port: false,
        });
        const unanswered = [...world.waiters].filter((w) => world.answers.get(w) !== 1);
        expect(unanswered).toEqual([]);
      } catch (error) {
        throw new Error(`seed ${seed}: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error,
        });
      }
    }
  });
});
