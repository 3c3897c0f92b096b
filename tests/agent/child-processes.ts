/**
 * Test helper: spawn Node scripts as real child processes (`process.execPath script ...`), read
 * their output line by line, wait on lines and exits (never on fixed sleeps), and kill by pid
 * whatever is still running at the end of a test.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const AGENT_BIN = fileURLToPath(new URL("../../bin/atoll-agent.js", import.meta.url));
export const FAULT_AGENT = fileURLToPath(new URL("../fixtures/fault-agent.mjs", import.meta.url));

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface RunningChild {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Complete stdout lines so far (at most `maxKeptLines`, oldest dropped). */
  readonly lines: string[];
  /** Number of stdout lines seen in total. */
  lineCount(): number;
  stderr(): string;
  /** Resolves on the first stdout line (past or future) matching; rejects if the child exits. */
  waitForLine(match: (line: string) => boolean, what?: string): Promise<string>;
  /** Resolves when the process has exited and its stdout and stderr are fully read. */
  readonly exited: Promise<Exit>;
  hasExited(): boolean;
}

/** Environment without variables that would make tests depend on the developer's machine. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OLLAMA_HOST;
  delete env.FAULT;
  delete env.PORT;
  delete env.MARK_FILE;
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

/** Owns the children of one test file; call `killAll` in `afterEach`. */
export class ChildTracker {
  readonly #running = new Set<RunningChild>();
  readonly #extraPids = new Set<number>();

  /** Spawns `process.execPath script ...args` with piped stdout/stderr. */
  spawn(
    script: string,
    args: readonly string[],
    options: { env?: NodeJS.ProcessEnv; cwd?: string; maxKeptLines?: number } = {},
  ): RunningChild {
    const child = spawn(process.execPath, [script, ...args], {
      env: options.env ?? cleanEnv(),
      cwd: options.cwd ?? REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    if (child.pid === undefined) throw new Error(`could not spawn ${script}`);
    const maxKeptLines = options.maxKeptLines ?? 10_000;
    const lines: string[] = [];
    let total = 0;
    let partial = "";
    let stderr = "";
    let exited = false;
    // "close" comes after "exit" once stdout and stderr are drained: only then is output final.
    let outputClosed = false;
    const waiters = new Set<() => void>();
    const notify = () => {
      for (const waiter of [...waiters]) waiter();
    };

    child.stdout?.setEncoding("utf8");
    child.stdout?.on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        total++;
        if (lines.length > maxKeptLines) lines.shift();
      }
      notify();
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      stderr += chunk;
    });
    child.once("exit", () => {
      exited = true;
    });
    const exitedPromise = once(child, "close").then(([code, signal]) => {
      outputClosed = true;
      notify();
      return { code, signal } as Exit;
    });

    const running: RunningChild = {
      child,
      pid: child.pid,
      lines,
      lineCount: () => total,
      stderr: () => stderr,
      exited: exitedPromise,
      hasExited: () => exited,
      waitForLine: (match, what = "the expected line") =>
        new Promise((resolve, reject) => {
          const check = () => {
            const found = lines.find(match);
            if (found !== undefined) {
              waiters.delete(check);
              resolve(found);
            } else if (outputClosed) {
              waiters.delete(check);
              reject(
                new Error(`process ${child.pid} exited before printing ${what}; stderr: ${stderr}`),
              );
            }
          };
          waiters.add(check);
          check();
        }),
    };
    this.#running.add(running);
    void exitedPromise.then(() => this.#running.delete(running));
    return running;
  }

  /** Also SIGKILL this pid (e.g. a grandchild) in `killAll`. */
  trackPid(pid: number): void {
    this.#extraPids.add(pid);
  }

  /** SIGKILLs every child still running (by pid) and waits for their exits. */
  async killAll(): Promise<void> {
    const pending = [...this.#running];
    for (const running of pending) {
      if (!running.hasExited()) running.child.kill("SIGKILL");
    }
    for (const pid of this.#extraPids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Already gone: nothing to clean up.
      }
    }
    this.#extraPids.clear();
    await Promise.all(pending.map((running) => running.exited));
  }
}

/** True while a process with this pid exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
