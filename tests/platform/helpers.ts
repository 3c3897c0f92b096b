import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { followLog } from "../../src/platform/log-follow.ts";
import { isProcessAlive } from "../../src/platform/proc-info.ts";

/** Absolute path of a fixture script in tests/platform/fixtures. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Temporary directories, removed by `cleanup()`. */
export class TempDirs {
  readonly #dirs: string[] = [];

  async make(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "atoll-platform-"));
    this.#dirs.push(dir);
    return dir;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.#dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  }
}

/**
 * Pids a test started (children and grandchildren). `leaked()` SIGKILLs whatever is still alive,
 * so one failing test cannot leave processes behind, and returns those pids so afterEach can fail.
 */
export class ProcessTracker {
  readonly #pids = new Set<number>();

  track(...pids: number[]): void {
    for (const pid of pids) this.#pids.add(pid);
  }

  leaked(): number[] {
    const alive = [...this.#pids].filter((pid) => isProcessAlive(pid));
    for (const pid of alive) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Exited between the check and the kill: not a leak after all.
      }
    }
    this.#pids.clear();
    return alive;
  }
}

/**
 * Waits until a line of `logPath` matches `pattern` (reading it from the start and following it)
 * and returns the match. Rejects after `timeoutMs`, so a broken fixture fails the test instead of
 * hanging it.
 */
export async function waitForLogLine(
  logPath: string,
  pattern: RegExp,
  timeoutMs = 10_000,
): Promise<RegExpMatchArray> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    for await (const lines of followLog(logPath, {
      signal: controller.signal,
      from: "start",
      pollIntervalMs: 50,
    })) {
      for (const line of lines) {
        const match = line.match(pattern);
        if (match !== null) return match;
      }
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  throw new Error(`no line matching ${pattern} in ${logPath} within ${timeoutMs} ms`);
}

/** Re-checks `condition` every few milliseconds until it holds; rejects after `timeoutMs`. */
export async function waitUntil(
  condition: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** {@link waitUntil} for a condition that has to ask something (an HTTP call, a request). */
export async function waitUntilAsync(
  condition: () => Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
