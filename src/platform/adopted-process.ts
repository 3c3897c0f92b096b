import { setTimeout as delay } from "node:timers/promises";
import { isSameProcess } from "./proc-info.ts";

/** A process the daemon did not spawn (it survived a daemon restart): watched by polling /proc. */
export interface AdoptedProcess {
  readonly pid: number;
  readonly startTimeTicks: number;
  /**
   * Resolves when the process is gone or its pid now belongs to another process.
   * The exit code is unknowable for a process that is not our child: code and signal are null.
   */
  readonly exited: Promise<{ code: null; signal: null; atMs: number }>;
}

/**
 * Watches `pid` (identified by its start time, so a reused pid is never taken for
 * it) every `pollIntervalMs` (default 500 ms) until it is gone or `signal` aborts
 * (then `exited` never resolves: the daemon is going away).
 */
export function adoptProcess(
  pid: number,
  startTimeTicks: number,
  options: { pollIntervalMs?: number; signal: AbortSignal },
): AdoptedProcess {
  const pollIntervalMs = options.pollIntervalMs ?? 500;
  const exited = (async () => {
    while (isSameProcess(pid, startTimeTicks)) {
      await delay(pollIntervalMs, undefined, { signal: options.signal }).catch(() => undefined);
      if (options.signal.aborted) return new Promise<never>(() => undefined);
    }
    return { code: null, signal: null, atMs: Date.now() };
  })();
  return { pid, startTimeTicks, exited };
}
