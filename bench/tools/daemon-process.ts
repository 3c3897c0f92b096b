/**
 * Running a peer's daemon as a child of the harness: spawned in its own process group with its
 * output in a file, stopped by its pid (never by name), and always waited for.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { isAlive } from "../lib/procfs.ts";
import { delay, nowMs } from "../lib/timing.ts";

export class DaemonProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  readonly logPath: string;

  constructor(
    command: string,
    args: readonly string[],
    options: { env: NodeJS.ProcessEnv; logPath: string; cwd?: string },
  ) {
    this.logPath = options.logPath;
    const log = openSync(options.logPath, "a");
    try {
      this.child = spawn(command, args, {
        detached: true,
        stdio: ["ignore", log, log],
        env: options.env,
        ...(options.cwd !== undefined && { cwd: options.cwd }),
      });
    } finally {
      closeSync(log);
    }
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code) => resolve(code));
      this.child.once("error", () => resolve(null));
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.pid > 0;
  }

  /** Last lines of the daemon's output, for error messages. */
  tail(lines = 15): string {
    try {
      return readFileSync(this.logPath, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  /** SIGTERM (or `signal`) to the daemon's pid, up to `graceMs` for it to exit, then SIGKILL. */
  async stop(graceMs: number, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (!this.running) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // Already gone.
    }
    const deadline = nowMs() + graceMs;
    while (this.running && nowMs() < deadline) {
      await Promise.race([this.exited, delay(50)]);
    }
    if (this.running) {
      try {
        process.kill(this.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
      await this.exited;
    }
  }
}

/** Reads a pid file; 0 when absent or malformed. */
export function readPidFile(file: string): number {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : 0;
  } catch {
    return 0;
  }
}

/** Waits for `pid` to be gone, bounded; SIGKILL at the end if it is still there. */
export async function waitPidGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = nowMs() + timeoutMs;
  while (isAlive(pid) && nowMs() < deadline) await delay(25);
  if (!isAlive(pid)) return true;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Gone meanwhile.
  }
  return false;
}
