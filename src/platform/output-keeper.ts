/**
 * The daemon's side of the output keeper (docs/platform.md, "Agent output: the output keeper"):
 * finds the keeper of the state dir or starts one, replaces one of another build, restarts it
 * when it dies, tells it about each agent's stream before the agent is spawned, and stops it
 * after the agents (or leaves it running on detach).
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
} from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Logger } from "../core/logger.ts";
import {
  EXIT_ALREADY_RUNNING,
  KEEPER_ENV,
  KEEPER_PROTOCOL,
  type KeeperIdentity,
  type KeeperPaths,
  keeperPaths,
  READY_LINE,
  type StreamSpec,
  type StreamStats,
} from "./keeper/protocol.ts";
import { KeeperConnection, KeeperRequestError } from "./keeper-connection.ts";
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

const REQUEST_TIMEOUT_MS = 10_000;
const STOP_WAIT_MS = 5_000;
const RESTART_FIRST_MS = 100;
const RESTART_MAX_MS = 5_000;

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

/** Options of {@link OutputKeeper}. */
export interface OutputKeeperOptions {
  /** The daemon's state dir (made absolute); the keeper's files are in `<stateDir>/keeper/`. */
  readonly stateDir: string;
  readonly logger: Logger;
  /** Longest wait for a new keeper to be ready, ms. Default 10 000. */
  readonly startTimeoutMs?: number;
  /** Overrides {@link keeperBuildId} (tests of a replacement). */
  readonly build?: string;
}

/** One agent's output as the daemon describes it. */
export interface OutputStream {
  readonly name: string;
  /** The agent's `<name>.log`. */
  readonly log: string;
  readonly maxBytes: number;
  readonly keep: number;
}

type State = "idle" | "starting" | "attached" | "restarting" | "stopping" | "stopped" | "detached";

/** The output keeper of one state dir, seen from the daemon. */
export class OutputKeeper {
  readonly paths: KeeperPaths;
  readonly #stateDir: string;
  readonly #logger: Logger;
  readonly #startTimeoutMs: number;
  readonly #build: string;
  /** Every stream this daemon told the keeper about: sent again to a new keeper. */
  readonly #streams = new Map<string, StreamSpec>();
  #state: State = "idle";
  #connection: KeeperConnection | undefined;
  #identity: KeeperIdentity | undefined;
  #establishing: Promise<void> | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #restartDelayMs = RESTART_FIRST_MS;

  constructor(options: OutputKeeperOptions) {
    this.#stateDir = path.resolve(options.stateDir);
    this.paths = keeperPaths(this.#stateDir);
    this.#logger = options.logger;
    this.#startTimeoutMs = options.startTimeoutMs ?? 10_000;
    this.#build = options.build ?? keeperBuildId();
  }

  /** Pid, start time and build of the keeper in use; undefined before start or while it restarts. */
  get identity(): KeeperIdentity | undefined {
    return this.#connection === undefined ? undefined : this.#identity;
  }

  /**
   * Connects to the keeper serving the state dir (kept when its protocol and build are ours,
   * replaced otherwise), or starts one. Idempotent.
   * @throws Error when no keeper could be started (its message says why).
   */
  start(): Promise<void> {
    if (this.#state !== "idle") return this.#establishing ?? Promise.resolve();
    this.#state = "starting";
    this.#establishing = this.#establish().then(
      () => {
        if (this.#state === "starting") this.#state = "attached";
      },
      (error: unknown) => {
        this.#state = "idle";
        throw error;
      },
    );
    return this.#establishing;
  }

  /**
   * Makes the agent's FIFO (if missing) and tells the keeper about its stream, before the agent
   * is spawned; starts the keeper first when `start` was never called. While the keeper is being
   * restarted the stream is only recorded: it is sent once a keeper is back.
   * @returns the FIFO to hand to the agent as stdout and stderr.
   * @throws Error when the keeper refuses the stream (for example an unwritable logs dir) or is
   *   stopped.
   */
  async prepare(stream: OutputStream): Promise<string> {
    if (this.#state === "idle") await this.start();
    if (this.#state === "stopping" || this.#state === "stopped" || this.#state === "detached") {
      throw new Error("the output keeper is stopped");
    }
    const fifo = path.join(this.paths.fifoDir, stream.name);
    await ensureFifo(fifo);
    const spec: StreamSpec = {
      name: stream.name,
      fifo,
      log: path.resolve(stream.log),
      maxBytes: stream.maxBytes,
      keep: stream.keep,
    };
    this.#streams.set(spec.name, spec);
    const connection = this.#connection;
    if (connection !== undefined) {
      try {
        await connection.request("add", { stream: spec }, REQUEST_TIMEOUT_MS);
      } catch (error) {
        if (error instanceof KeeperRequestError) throw new Error(`output keeper: ${error.message}`);
        // Lost meanwhile: the restart sends every stream again.
      }
    }
    return fifo;
  }

  /** Forgets an agent's stream: the keeper drains and closes it and deletes its FIFO. */
  async remove(name: string): Promise<void> {
    if (!this.#streams.delete(name)) return;
    await this.#connection
      ?.request("remove", { name }, REQUEST_TIMEOUT_MS)
      .catch((error: unknown) => {
        this.#logger.warn("output keeper: cannot remove a stream", {
          agent: name,
          error: String(error),
        });
      });
  }

  /** Counters of every stream the keeper serves. */
  async stats(): Promise<Record<string, StreamStats>> {
    const connection = this.#connection;
    if (connection === undefined) throw new Error("no output keeper connected");
    const reply = await connection.request("stats", {}, REQUEST_TIMEOUT_MS);
    return reply.streams as Record<string, StreamStats>;
  }

  /**
   * Stops the keeper (after the agents): it drains every pipe, closes its files and exits. Waits
   * for its process to be gone (SIGKILL after 5 s). Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#state === "stopped" || this.#state === "detached") return;
    this.#state = "stopping";
    clearTimeout(this.#restartTimer);
    await this.#establishing?.catch(() => undefined);
    const connection = this.#connection;
    const identity = this.#identity;
    this.#connection = undefined;
    if (connection !== undefined) {
      await connection.request("stop", {}, REQUEST_TIMEOUT_MS).catch((error: unknown) => {
        this.#logger.warn("output keeper did not confirm its stop", { error: String(error) });
      });
      connection.destroy();
    } else if (identity !== undefined && isSameProcess(identity.pid, identity.startTimeTicks)) {
      signal(identity.pid, "SIGTERM"); // SIGTERM makes a keeper stop like the request does
    }
    if (identity !== undefined) await this.#waitGone(identity, STOP_WAIT_MS);
    this.#state = "stopped";
    this.#logger.info("output keeper stopped", { pid: identity?.pid });
  }

  /** Leaves the keeper running for the next daemon (SIGUSR2 detach): closes the connection only. */
  detach(): void {
    if (this.#state === "stopped") return;
    this.#state = "detached";
    clearTimeout(this.#restartTimer);
    this.#connection?.destroy();
    this.#connection = undefined;
  }

  async #establish(): Promise<void> {
    mkdirSync(this.paths.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.paths.dir, 0o700);
    mkdirSync(this.paths.fifoDir, { recursive: true, mode: 0o700 });
    for (let attempt = 1; ; attempt++) {
      if (await this.#adoptRunning()) return;
      await this.#endUnresponsiveKeepers();
      const outcome = await this.#spawnKeeper();
      // Another keeper won the state dir between our check and its start: talk to that one.
      if (outcome === "already-running" && attempt < 3) continue;
      if (outcome === "already-running")
        throw new Error("another output keeper holds the state dir but does not answer");
      if (await this.#adoptRunning()) return;
      throw new Error(`the output keeper started but does not answer on ${this.paths.socket}`);
    }
  }

  /**
   * Attaches to the keeper answering on the socket when it has our protocol and build; hands
   * over (release, then wait until it is gone) when it has another. True when attached.
   */
  async #adoptRunning(): Promise<boolean> {
    const connection = await KeeperConnection.connect(this.paths.socket);
    if (connection === undefined) return false;
    let hello: KeeperIdentity;
    try {
      hello = (await connection.request(
        "hello",
        { protocol: KEEPER_PROTOCOL, build: this.#build },
        REQUEST_TIMEOUT_MS,
      )) as unknown as KeeperIdentity;
    } catch {
      connection.destroy(); // silent: ended as unresponsive next
      return false;
    }
    const identity: KeeperIdentity = {
      protocol: hello.protocol,
      build: hello.build,
      pid: hello.pid,
      startTimeTicks: hello.startTimeTicks,
    };
    if (identity.protocol === KEEPER_PROTOCOL && identity.build === this.#build) {
      await this.#attach(connection, identity);
      this.#logger.info("output keeper connected", { pid: identity.pid, build: identity.build });
      return true;
    }
    this.#logger.info("replacing the output keeper: it runs another build", {
      pid: identity.pid,
      running: identity.build,
      wanted: this.#build,
    });
    // Exactly one reader per FIFO: the old keeper closes them all before it answers and exits.
    await connection.request("release", {}, REQUEST_TIMEOUT_MS).catch(() => undefined);
    connection.destroy();
    await this.#waitGone(identity, REQUEST_TIMEOUT_MS);
    return false;
  }

  async #attach(connection: KeeperConnection, identity: KeeperIdentity): Promise<void> {
    this.#connection = connection;
    this.#identity = identity;
    this.#restartDelayMs = RESTART_FIRST_MS;
    connection.onClose(() => this.#lost(connection));
    // A new keeper has the streams of its state file; these are the ones this daemon knows.
    await Promise.all(
      [...this.#streams.values()].map((stream) =>
        connection.request("add", { stream }, REQUEST_TIMEOUT_MS).catch((error: unknown) => {
          this.#logger.error("output keeper refused a stream", {
            agent: stream.name,
            error: String(error),
          });
        }),
      ),
    );
  }

  /** Kills (SIGKILL, and waits for) any live keeper of this state dir that did not answer. */
  async #endUnresponsiveKeepers(): Promise<void> {
    for (const leader of findGroupLeadersWithEnv(KEEPER_ENV, this.#stateDir)) {
      this.#logger.warn("ending an output keeper that does not answer", { pid: leader.stat.pid });
      signal(-leader.stat.pid, "SIGKILL");
      await pollGone({ pid: leader.stat.pid, startTimeTicks: leader.stat.startTimeTicks }, 2_000);
    }
  }

  /** Starts a keeper and waits until it says it is ready. */
  async #spawnKeeper(): Promise<"ready" | "already-running"> {
    const stderr = openSync(this.paths.stderr, "w", 0o600);
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(
        process.execPath,
        [...KEEPER_NODE_FLAGS, KEEPER_ENTRY, "--state-dir", this.#stateDir, "--build", this.#build],
        {
          cwd: this.paths.dir,
          // Own session and process group: not hit by signals to the daemon's group.
          detached: true,
          stdio: ["ignore", "ignore", stderr, "pipe"],
          env: { PATH: process.env.PATH ?? "/usr/bin:/bin", [KEEPER_ENV]: this.#stateDir },
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
        resolve(new Error(`the output keeper was not ready within ${this.#startTimeoutMs} ms`));
      }, this.#startTimeoutMs);
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
        else
          settle(
            new Error(
              `the output keeper exited (${code ?? exitSignal}) before it was ready${this.#stderrTail()}`,
            ),
          );
      });
    });
    readiness.destroy();
    child.removeAllListeners("exit");
    if (outcome instanceof Error) throw outcome;
    if (outcome === "ready") this.#logger.info("output keeper started", { pid: child.pid });
    return outcome;
  }

  #stderrTail(): string {
    try {
      const text = readFileSync(this.paths.stderr, "utf8").trim();
      return text === "" ? "" : `: ${text.split("\n").slice(-5).join(" | ")}`;
    } catch {
      return "";
    }
  }

  /** The connection closed while this daemon still needs a keeper: start another. */
  #lost(connection: KeeperConnection): void {
    if (connection !== this.#connection) return;
    this.#connection = undefined;
    if (this.#state !== "attached" && this.#state !== "restarting") return;
    this.#state = "restarting";
    this.#logger.warn("output keeper lost; starting another", { pid: this.#identity?.pid });
    this.#restart();
  }

  #restart(): void {
    this.#establishing = (async () => {
      const old = this.#identity;
      // The old keeper may live on (it closed the socket but did not exit): end it first, so
      // that its FIFOs never have two readers.
      if (old !== undefined && isSameProcess(old.pid, old.startTimeTicks)) {
        signal(-old.pid, "SIGKILL");
        await this.#waitGone(old, STOP_WAIT_MS);
      }
      await this.#establish();
    })().then(
      () => {
        if (this.#state === "restarting") this.#state = "attached";
      },
      (error: unknown) => {
        if (this.#state !== "restarting") return;
        this.#logger.error("cannot start the output keeper; retrying", {
          error: String(error),
          retryInMs: this.#restartDelayMs,
        });
        this.#restartTimer = setTimeout(() => this.#restart(), this.#restartDelayMs);
        this.#restartTimer.unref();
        this.#restartDelayMs = Math.min(this.#restartDelayMs * 2, RESTART_MAX_MS);
      },
    );
  }

  /** Waits until the keeper process is gone; SIGKILL to its group after `timeoutMs`. */
  async #waitGone(identity: KeeperIdentity, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (isSameProcess(identity.pid, identity.startTimeTicks)) {
      if (Date.now() > deadline) {
        this.#logger.warn("output keeper did not exit; killing it", { pid: identity.pid });
        signal(-identity.pid, "SIGKILL");
        await pollGone(identity, 2_000);
        return;
      }
      await delay(10);
    }
  }
}

async function pollGone(
  identity: Pick<KeeperIdentity, "pid" | "startTimeTicks">,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isSameProcess(identity.pid, identity.startTimeTicks) && Date.now() < deadline) {
    await delay(10);
  }
}

/** kill(2) that ignores a process already gone. */
function signal(pid: number, name: NodeJS.Signals): void {
  if (pid === 0) return;
  try {
    process.kill(pid, name);
  } catch {
    // Gone already.
  }
}

/** Makes `fifo` a FIFO (mode 0600) unless it is one; replaces anything else at that path. */
async function ensureFifo(fifo: string): Promise<void> {
  try {
    if (lstatSync(fifo).isFIFO()) return;
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
}
