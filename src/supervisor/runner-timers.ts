/**
 * The timers the lifecycle machine arms (start probes, the start deadline, liveness rounds, the
 * restart backoff): one per name, re-arming replaces, each fires with the token it was armed
 * with so the machine can tell a stale one. Unref'd: a pending timer never keeps Node alive.
 */
import type { TimerName } from "../core/lifecycle-events.ts";

export class RunnerTimers {
  readonly #timers = new Map<TimerName, NodeJS.Timeout>();
  readonly #fire: (timer: TimerName, token: number) => void;

  constructor(fire: (timer: TimerName, token: number) => void) {
    this.#fire = fire;
  }

  arm(timer: TimerName, delayMs: number, token: number): void {
    this.cancel(timer);
    const handle = setTimeout(() => {
      if (this.#timers.get(timer) !== handle) return;
      this.#timers.delete(timer);
      this.#fire(timer, token);
    }, delayMs);
    handle.unref();
    this.#timers.set(timer, handle);
  }

  cancel(timer: TimerName): void {
    const handle = this.#timers.get(timer);
    if (handle === undefined) return;
    clearTimeout(handle);
    this.#timers.delete(timer);
  }

  cancelAll(): void {
    for (const timer of [...this.#timers.keys()]) this.cancel(timer);
  }
}
