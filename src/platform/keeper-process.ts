/**
 * The output keeper as a process, seen from the daemon: which code it runs, how it is started
 * (its own session, stdio /dev/null, readiness on fd 3), how an unresponsive one is ended, and
 * the agents' FIFOs it reads. `output-keeper.ts` decides when.
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  constants,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
} from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  EXIT_ALREADY_RUNNING,
  KEEPER_ENV,
  KEEPER_PROTOCOL,
  type KeeperIdentity,
  type KeeperPaths,
  READY_LINE,
} from "./keeper/protocol.ts";
import { findGroupLeadersWithEnv, isSameProcess } from "./proc-info.ts";

/**
 * The keeper's entry file, with this module's own extension: `.ts` while the sources run type
 * stripped, `.js` once built to `dist/`.
 */
const KEEPER_ENTRY = fileURLToPath(
  new URL(`./keeper/main${path.extname(fileURLToPath(import.meta.url))}`, import.meta.url),
);

/** Node flags of the keeper: a small young generation keeps its resident memory down. */
const KEEPER_NODE_FLAGS = ["--max-semi-space-size=1"] as const;

const execFileAsync = promisify(execFile);

/**
 * Identifies the keeper's code: the protocol version and a hash of the files of `keeper/` with
 * the running extension. A daemon keeps a running keeper only when it has the same build.
 */
export function keeperBuildId(): string {
  const dir = path.dirname(KEEPER_ENTRY);
  const extension = path.extname(KEEPER_ENTRY);
  const hash = createHash("sha256");
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith(extension))
    .sort()) {
    hash.update(file);
    hash.update(readFileSync(path.join(dir, file)));
  }
  return `${KEEPER_PROTOCOL}-${hash.digest("hex").slice(0, 16)}`;
}

/** What {@link spawnKeeper} needs. */
export interface SpawnKeeperOptions {
  readonly paths: KeeperPaths;
  /** Absolute state dir the keeper serves. */
  readonly stateDir: string;
  readonly build: string;
  /** Longest wait for `ready`, ms; the keeper is killed after it. */
  readonly startTimeoutMs: number;
}

/**
 * Starts a keeper and waits until it writes `ready` on fd 3 (then closes our end: nothing of it
 * depends on the daemon any more).
 * @returns its pid when ready; `already-running` when it found another keeper on the state dir.
 * @throws Error when it exits first (with the end of its stderr) or is not ready in time.
 */
export async function spawnKeeper(
  options: SpawnKeeperOptions,
): Promise<{ pid: number } | "already-running"> {
  const { paths } = options;
  // Made afresh (`wx` after removing what was there): a symbolic link left at its path is
  // removed, never followed (opening it "w" would truncate the file it points to).
  rmSync(paths.stderr, { force: true });
  const stderr = openSync(paths.stderr, "wx", 0o600);
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(
      process.execPath,
      [
        ...KEEPER_NODE_FLAGS,
        KEEPER_ENTRY,
        "--state-dir",
        options.stateDir,
        "--build",
        options.build,
      ],
      {
        cwd: paths.dir,
        // Own session and process group: not hit by signals to the daemon's group.
        detached: true,
        stdio: ["ignore", "ignore", stderr, "pipe"],
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", [KEEPER_ENV]: options.stateDir },
      },
    );
  } finally {
    closeSync(stderr);
  }
  child.unref();
  const readiness = child.stdio[3] as Readable;
  const outcome = await new Promise<"ready" | "already-running" | Error>((resolve) => {
    let text = "";
    const timer = setTimeout(() => {
      signal(child.pid ?? 0, "SIGKILL");
      resolve(new Error(`the output keeper was not ready within ${options.startTimeoutMs} ms`));
    }, options.startTimeoutMs);
    const settle = (value: "ready" | "already-running" | Error): void => {
      clearTimeout(timer);
      resolve(value);
    };
    readiness.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8");
      if (text.includes(READY_LINE)) settle("ready");
    });
    readiness.on("error", () => undefined);
    child.once("error", (error) => settle(error));
    child.once("exit", (code, exitSignal) => {
      if (code === EXIT_ALREADY_RUNNING) settle("already-running");
      else {
        const why = stderrTail(paths.stderr);
        settle(
          new Error(`the output keeper exited (${code ?? exitSignal}) before it was ready${why}`),
        );
      }
    });
  });
  readiness.destroy();
  child.removeAllListeners("exit");
  if (outcome instanceof Error) throw outcome;
  return outcome === "ready" ? { pid: child.pid ?? 0 } : outcome;
}

function stderrTail(file: string): string {
  try {
    const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    let text: string;
    try {
      text = readFileSync(fd, "utf8").trim();
    } finally {
      closeSync(fd);
    }
    return text === "" ? "" : `: ${text.split("\n").slice(-5).join(" | ")}`;
  } catch {
    return "";
  }
}

/**
 * Kills (SIGKILL to its group) and waits for every live keeper of `stateDir`: called when none
 * answers on the socket, so any left is hung and still holds the FIFOs.
 * @returns the pids it ended.
 */
export async function endUnresponsiveKeepers(stateDir: string): Promise<number[]> {
  const ended: number[] = [];
  // Only the daemon's user's: a process of another user copying the variable is not a keeper.
  const uid = process.getuid?.();
  for (const leader of findGroupLeadersWithEnv(KEEPER_ENV, stateDir, {
    ...(uid !== undefined && { uid }),
  })) {
    signal(-leader.stat.pid, "SIGKILL");
    await waitGone({ pid: leader.stat.pid, startTimeTicks: leader.stat.startTimeTicks }, 2_000);
    ended.push(leader.stat.pid);
  }
  return ended;
}

/** Resolves once the process is gone (true), or false after `timeoutMs`. */
export async function waitGone(
  identity: Pick<KeeperIdentity, "pid" | "startTimeTicks">,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isSameProcess(identity.pid, identity.startTimeTicks)) {
    if (Date.now() > deadline) return false;
    await delay(10);
  }
  return true;
}

/** kill(2) that ignores a process already gone (and pid 0, which would be our own group). */
export function signal(pid: number, name: NodeJS.Signals): void {
  if (pid === 0) return;
  try {
    process.kill(pid, name);
  } catch {
    // Gone already.
  }
}

/**
 * Makes `fifo` a FIFO (mode 0600) unless it is one; replaces anything else at that path (a
 * symbolic link is removed, never followed).
 * @returns what was replaced ("a symbolic link", "a regular file"...), or undefined.
 */
export async function ensureFifo(fifo: string): Promise<string | undefined> {
  let replaced: string | undefined;
  try {
    const found = lstatSync(fifo);
    if (found.isFIFO()) return undefined;
    replaced = found.isSymbolicLink()
      ? "a symbolic link"
      : found.isFile()
        ? "a regular file"
        : "not a FIFO";
    unlinkSync(fifo);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  try {
    // Node has no mkfifo(3); one short process per agent name, ever (the FIFO is kept).
    await execFileAsync("mkfifo", ["-m", "600", fifo]);
  } catch (error) {
    // Made meanwhile by a concurrent start of the same agent.
    if (!lstatSync(fifo, { throwIfNoEntry: false })?.isFIFO()) throw error;
  }
  return replaced;
}
