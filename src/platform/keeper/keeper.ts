/**
 * The output keeper's streams (docs/platform.md, "Agent output: the output keeper"): for each
 * agent, its FIFO opened `O_RDWR | O_NONBLOCK` and read event-driven by a `net.Socket`, each
 * chunk written at once to the agent's {@link BoundedLog}. Also the keeper's state file, which
 * names the streams so that a restarted keeper serves them before anyone tells it to.
 *
 * Runs inside the keeper process (`main.ts`); node builtins only.
 */
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { Socket } from "node:net";
import { BoundedLog } from "./bounded-log.ts";
import {
  KEEPER_STATE_VERSION,
  pickStreamSpec,
  type StreamSpec,
  type StreamStats,
  streamSpecProblem,
} from "./protocol.ts";

/** Diagnostics sink of the keeper (its own JSON log). */
export type KeeperLog = (
  level: "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>,
) => void;

/**
 * One buffer for every stream's reads: libuv delivers one read at a time and each is written
 * out before the callback returns, so the bytes never need to outlive it.
 */
const READ_BUFFER = Buffer.alloc(64 * 1024);

/** One agent's FIFO, read into its log. */
class Stream {
  spec: StreamSpec;
  readonly #fd: number;
  readonly #socket: Socket;
  readonly #log: BoundedLog;
  readonly #keeperLog: KeeperLog;
  #closed = false;

  /**
   * @param refuseUnsafeLog for a new stream (`add`): refuse it when its log path holds
   *   something other than a regular file (a symbolic link...), so that the agent's start fails
   *   with that reason. A stream restored from the state file is opened anyway (its agent may be
   *   running and must not block): its output is dropped and counted until the path is fixed.
   * @throws the fs error when the FIFO cannot be opened, or when the path is not a FIFO (a
   *   symbolic link is never followed); Error when `refuseUnsafeLog` refuses the log.
   */
  constructor(spec: StreamSpec, keeperLog: KeeperLog, refuseUnsafeLog = false) {
    this.spec = spec;
    this.#keeperLog = keeperLog;
    let fd: number;
    try {
      fd = openSync(spec.fifo, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ELOOP") {
        throw new Error(`${spec.fifo} is a symbolic link, not a FIFO: refusing to read it`);
      }
      throw error;
    }
    if (!fstatSync(fd).isFIFO()) {
      closeSync(fd);
      throw new Error(`${spec.fifo} is not a FIFO`);
    }
    this.#log = new BoundedLog(spec.log, spec, (problem) =>
      keeperLog("warn", "log write failed", { stream: spec.name, problem }),
    );
    // A refused log was reported by its onError ("log write failed"); a restored stream reads
    // on, dropping and counting what it cannot write.
    const refusal = refuseUnsafeLog ? this.#log.refusal : undefined;
    if (refusal !== undefined) {
      this.#log.close();
      closeSync(fd);
      throw new Error(`${spec.log} is ${refusal}`);
    }
    this.#fd = fd;
    // Holding the FIFO read-write, the keeper never sees end-of-file: the same reader serves
    // every process of the agent. `onread` hands each read over in a fixed buffer (no
    // allocation per chunk) and makes pause() stop reading at once (for a handover).
    this.#socket = new Socket({
      fd,
      readable: true,
      writable: false,
      onread: {
        buffer: READ_BUFFER,
        callback: (bytes: number, buffer: Uint8Array): boolean => {
          this.#log.write(buffer.subarray(0, bytes));
          return true;
        },
      },
    });
    this.#socket.on("error", (error: Error) => {
      keeperLog("error", "reading the FIFO failed", { stream: spec.name, error: error.message });
    });
  }

  get stats(): StreamStats {
    return { ...this.#log.stats };
  }

  /** True when `spec` names the same FIFO and log as this stream (limits may differ). */
  sameFiles(spec: StreamSpec): boolean {
    return spec.fifo === this.spec.fifo && spec.log === this.spec.log;
  }

  setLimits(spec: StreamSpec): void {
    this.spec = spec;
    this.#log.setLimits(spec);
  }

  /**
   * Stops the event-driven reads, then reads what the pipe still holds until it is empty and
   * writes it out. Synchronous: no other read can slip in between.
   */
  drain(): void {
    if (this.#closed) return;
    this.#socket.pause();
    for (;;) {
      let bytes: number;
      try {
        bytes = readSync(this.#fd, READ_BUFFER, 0, READ_BUFFER.length, null);
      } catch (error) {
        // EAGAIN: the pipe is empty. Anything else: nothing more can be read either.
        if ((error as NodeJS.ErrnoException).code !== "EAGAIN") {
          this.#keeperLog("warn", "draining the FIFO failed", {
            stream: this.spec.name,
            error: String(error),
          });
        }
        return;
      }
      if (bytes === 0) return;
      this.#log.write(READ_BUFFER.subarray(0, bytes));
    }
  }

  /** Drains, then closes the FIFO and the log. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.drain();
    this.#closed = true;
    this.#socket.destroy(); // closes the descriptor
    this.#log.close();
  }
}

/** The streams of one keeper, and its state file. */
export class Keeper {
  readonly #stateFile: string;
  readonly #log: KeeperLog;
  readonly #streams = new Map<string, Stream>();

  constructor(stateFile: string, log: KeeperLog) {
    this.#stateFile = stateFile;
    this.#log = log;
  }

  /** Opens every stream named in the state file; a stream that fails is logged and skipped. */
  restore(): void {
    let text: string;
    try {
      // Never through a symbolic link (ELOOP): the keeper must not read another file as its own.
      const fd = openSync(this.#stateFile, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        text = readFileSync(fd, "utf8");
      } finally {
        closeSync(fd);
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        this.#log("warn", "cannot read the state file", { error: String(error) });
      }
      return;
    }
    let streams: unknown[] = [];
    try {
      const doc = JSON.parse(text) as { version?: unknown; streams?: unknown };
      if (doc.version === KEEPER_STATE_VERSION && Array.isArray(doc.streams)) streams = doc.streams;
      else this.#log("warn", "state file has an unknown layout; ignoring it");
    } catch {
      // V8's message quotes the text: never copy a file's content into a log.
      this.#log("warn", "state file is not JSON; ignoring it");
    }
    for (const value of streams) {
      const problem = streamSpecProblem(value);
      if (problem !== undefined) {
        this.#log("warn", "state file entry ignored", { problem });
        continue;
      }
      try {
        this.#open(pickStreamSpec(value as StreamSpec));
      } catch (error) {
        this.#log("warn", "cannot restore a stream", {
          stream: (value as StreamSpec).name,
          error: String(error),
        });
      }
    }
    this.#log("info", "streams restored", { streams: [...this.#streams.keys()] });
  }

  /**
   * Starts serving a stream, or updates the limits of one it serves (a stream whose files
   * changed is drained, closed and opened again).
   * @throws Error with a message when the spec is malformed or the FIFO cannot be opened.
   */
  add(value: unknown): void {
    const problem = streamSpecProblem(value);
    if (problem !== undefined) throw new Error(problem);
    const spec = pickStreamSpec(value as StreamSpec);
    const current = this.#streams.get(spec.name);
    if (current?.sameFiles(spec)) {
      current.setLimits(spec);
    } else {
      current?.close();
      this.#streams.delete(spec.name);
      this.#open(spec, true);
    }
    this.#save();
  }

  /** Drains and closes a stream, deletes its FIFO and forgets it (unknown names are fine). */
  remove(name: string): void {
    const stream = this.#streams.get(name);
    if (stream === undefined) return;
    stream.close();
    this.#streams.delete(name);
    try {
      unlinkSync(stream.spec.fifo);
    } catch {
      // Already gone: nothing to clean up.
    }
    this.#save();
  }

  stats(): Record<string, StreamStats> {
    const out: Record<string, StreamStats> = {};
    for (const [name, stream] of this.#streams) out[name] = stream.stats;
    return out;
  }

  /** Drains and closes every stream (for stop and release); the state file is kept. */
  closeAll(): void {
    for (const stream of this.#streams.values()) {
      try {
        stream.close();
      } catch (error) {
        this.#log("error", "closing a stream failed", {
          stream: stream.spec.name,
          error: String(error),
        });
      }
    }
    this.#streams.clear();
  }

  #open(spec: StreamSpec, refuseUnsafeLog = false): void {
    this.#streams.set(spec.name, new Stream(spec, this.#log, refuseUnsafeLog));
  }

  /**
   * Writes the state file (temp file, rename). The temp file is created afresh (`wx`: a
   * symbolic link left at its path is removed, never written through). A failure is logged;
   * the streams carry on.
   */
  #save(): void {
    const doc = {
      version: KEEPER_STATE_VERSION,
      streams: [...this.#streams.values()].map((s) => s.spec),
    };
    const temp = `${this.#stateFile}.tmp`;
    try {
      rmSync(temp, { force: true });
      writeFileSync(temp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600, flag: "wx" });
      renameSync(temp, this.#stateFile);
    } catch (error) {
      this.#log("warn", "cannot save the state file", { error: String(error) });
    }
  }
}
