/**
 * One run of the reducer: the machine being changed and the effects decided so far. Handlers
 * change the machine only through `moveTo` (phase and public state together, every hop checked
 * by `transition`) and `update` (the facts beside the phase); `finish` adds the one `publish` and
 * the one `persist` the whole event needs. Pure: nothing here performs I/O.
 */
import { type HealthName, isLive, transition } from "./agent-state.ts";
import type { Effect, Failure, Outcome, TimerName } from "./lifecycle-events.ts";
import {
  type AgentMachine,
  heldPort,
  liveProcess,
  type Phase,
  publicState,
} from "./lifecycle-model.ts";

/** What the reducer returns: the next machine and what the runner must do, in order. */
export interface Reduction<D> {
  readonly state: AgentMachine<D>;
  readonly effects: readonly Effect<D>[];
}

/** Timers that belong to a phase, cancelled when the agent leaves it. */
const PHASE_TIMERS: Partial<Record<Phase["kind"], readonly TimerName[]>> = {
  starting: ["startProbe", "startDeadline"],
  running: ["liveness"],
  backoff: ["backoff"],
};

function generationOf(phase: Phase): number | undefined {
  switch (phase.kind) {
    case "starting":
    case "running":
      return phase.process.generation;
    case "backoff":
      return phase.token;
    default:
      return undefined;
  }
}

/** The facts state.json keeps (SPEC §5): a change of any of them is persisted. */
function durableKey(m: AgentMachine<unknown>): string {
  const proc = liveProcess(m.phase);
  return `${m.desired}|${heldPort(m.phase)}|${proc?.pid ?? 0}|${proc?.startTimeTicks}|${m.startTimeMs}`;
}

/**
 * "Definition removed" as watchers see it: on a live agent (one that is not live is dropped by
 * the registry at once, which publishes its removal instead).
 */
function removedFlag(m: AgentMachine<unknown>): boolean {
  const idle = m.phase.kind === "idle" || m.phase.kind === "invalid";
  return m.definitions.latest.kind === "removed" && !idle;
}

export class Step<D> {
  readonly nowMs: number;
  readonly #initial: AgentMachine<D>;
  #machine: AgentMachine<D>;
  readonly #effects: Effect<D>[] = [];

  constructor(machine: AgentMachine<D>, nowMs: number) {
    this.#initial = machine;
    this.#machine = machine;
    this.nowMs = nowMs;
  }

  get m(): AgentMachine<D> {
    return this.#machine;
  }

  get phase(): Phase {
    return this.#machine.phase;
  }

  /** Changes facts beside the phase (never `phase` or `label`: those go through `moveTo`). */
  update(patch: Partial<Omit<AgentMachine<D>, "phase" | "label">>): void {
    this.#machine = { ...this.#machine, ...patch };
  }

  /**
   * Enters `phase`. With a `reason` the public state's label is set (an illegal hop throws
   * IllegalTransitionError); without one the public state must not change. Timers of the phase
   * left behind are cancelled; health is UNKNOWN in states without a probed process (STARTING
   * until its first healthy probe, BACKOFF, and the states that are not live).
   */
  moveTo(phase: Phase, reason?: string, message = ""): void {
    const before = this.#machine;
    const from = before.label.state;
    const to = publicState(phase);
    let label = before.label;
    if (reason !== undefined) {
      // Staying in a state with a new reason is never an illegal edge.
      label =
        to === from
          ? { state: to, reason, message, sinceMs: this.nowMs }
          : transition(before.label, to, reason, message, this.nowMs);
    } else if (to !== from) {
      // A bug in a handler, never user input: refused in the same single place.
      label = transition(before.label, to, before.label.reason, before.label.message, this.nowMs);
    }
    if (before.phase.kind !== phase.kind || generationOf(before.phase) !== generationOf(phase)) {
      for (const timer of PHASE_TIMERS[before.phase.kind] ?? []) {
        this.emit({ type: "cancelTimer", timer });
      }
    }
    const resetHealth = to !== from && (!isLive(to) || to === "STARTING" || to === "BACKOFF");
    this.#machine = {
      ...before,
      phase,
      label,
      ...(resetHealth && { health: "UNKNOWN" as HealthName, memoryBytes: 0 }),
    };
  }

  emit(effect: Effect<D>): void {
    this.#effects.push(effect);
  }

  settle(waiters: readonly number[], outcome: Outcome): void {
    if (waiters.length > 0) this.emit({ type: "settle", waiters, outcome });
  }

  fail(waiters: readonly number[], failure: Failure): void {
    this.settle(waiters, { ok: false, failure });
  }

  log(level: "info" | "warn" | "error", message: string, fields: Record<string, unknown>): void {
    this.emit({ type: "log", level, message, fields: { agent: this.#machine.name, ...fields } });
  }

  armTimer(timer: TimerName, delayMs: number, token: number): void {
    this.emit({ type: "armTimer", timer, delayMs: Math.max(0, delayMs), token });
  }

  /** The next machine and its effects, with `persist` and `publish` when they are due. */
  finish(): Reduction<D> {
    const before = this.#initial;
    const after = this.#machine;
    if (durableKey(before) !== durableKey(after)) this.#effects.push({ type: "persist" });
    const a = before.label;
    const b = after.label;
    if (
      a.state !== b.state ||
      a.reason !== b.reason ||
      a.message !== b.message ||
      before.health !== after.health ||
      removedFlag(before) !== removedFlag(after)
    ) {
      this.#effects.push({
        type: "publish",
        previousState: a.state,
        previousHealth: before.health,
      });
    }
    return { state: after, effects: this.#effects };
  }
}
