/** Small timing and statistics helpers; durations are milliseconds unless a name says otherwise. */
import { setTimeout as delay } from "node:timers/promises";

export { delay };

/** Milliseconds on a monotonic clock. */
export function nowMs(): number {
  return performance.now();
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The q-quantile (0..1) of `values` by nearest rank; NaN for an empty list. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/**
 * Runs `fn` until it returns a value other than undefined, every `intervalMs`, for at most
 * `timeoutMs`; throws with `what` on timeout.
 */
export async function pollUntil<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  options: { readonly intervalMs: number; readonly timeoutMs: number },
): Promise<T> {
  const deadline = nowMs() + options.timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (nowMs() >= deadline) throw new Error(`timed out after ${options.timeoutMs} ms: ${what}`);
    await delay(options.intervalMs);
  }
}

/** Rejects after `timeoutMs` with `what` unless `promise` settles first. */
export async function withTimeout<T>(
  what: string,
  promise: Promise<T>,
  timeoutMs: number,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
