/**
 * The daemon's side of the output keeper (docs/platform.md, "Agent output: the output keeper"):
 * finds the keeper of the state dir or starts one, replaces one of another build, restarts it
 * when it dies, tells it about each agent's stream before the agent is spawned, and stops it
 * after the agents (or leaves it running on detach).
 */
import { chmodSync, mkdirSync } from "node:fs";
import path from "node:path";
import type { Logger } from "../core/logger.ts";
import {
  KEEPER_PROTOCOL,
  type KeeperIdentity,
  type KeeperPaths,
  keeperPaths,
  type StreamSpec,
  type StreamStats,
} from "./keeper/protocol.ts";
import { KeeperConnection, KeeperRequestError } from "./keeper-connection.ts";
import {
  endUnresponsiveKeepers,
  ensureFifo,
  keeperBuildId,
  signal,
  spawnKeeper,
  waitGone,
} from "./keeper-process.ts";
import { isSameProcess } from "./proc-info.ts";

const REQUEST_TIMEOUT_MS = 10_000;
const STOP_WAIT_MS = 5_000;
const RESTART_FIRST_MS = 100;
const RESTART_MAX_MS = 5_000;

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
    const replaced = await ensureFifo(fifo);
    if (replaced !== undefined) {
      this.#logger.warn("an agent's FIFO path held something else; replaced it by a FIFO", {
        agent: stream.name,
        fifo,
        found: replaced,
      });
    }
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

  /**
   * For a daemon that gives up before it supervises anything (it could not listen): stops the
   * keeper when it serves no stream, and leaves it running otherwise, since agents of an earlier
   * daemon may still write through it (the next daemon reconnects to it).
   */
  async leave(): Promise<void> {
    const streams = await this.stats().catch(() => undefined);
    if (streams !== undefined && Object.keys(streams).length === 0) await this.stop();
    else this.detach();
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
      for (const pid of await endUnresponsiveKeepers(this.#stateDir)) {
        this.#logger.warn("ended an output keeper that did not answer", { pid });
      }
      const outcome = await spawnKeeper({
        paths: this.paths,
        stateDir: this.#stateDir,
        build: this.#build,
        startTimeoutMs: this.#startTimeoutMs,
      });
      if (outcome !== "already-running") this.#logger.info("output keeper started", outcome);
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
    if (await waitGone(identity, timeoutMs)) return;
    this.#logger.warn("output keeper did not exit; killing it", { pid: identity.pid });
    signal(-identity.pid, "SIGKILL");
    await waitGone(identity, 2_000);
  }
}
