/**
 * The contract between the daemon and the output keeper (docs/platform.md, "Protocol between
 * daemon and keeper"): where its files are in the state dir, the messages, the line framing.
 * Imported by both sides; node builtins only, since every import costs the keeper memory.
 *
 * Frozen forever: the framing (one JSON object per line), `hello` and `release`, so that any
 * daemon can identify and retire any keeper. Other messages may gain fields; an incompatible
 * change raises {@link KEEPER_PROTOCOL}.
 */
import path from "node:path";

/** Version of the messages below. */
export const KEEPER_PROTOCOL = 1;

/** Version of `keeper.json`. */
export const KEEPER_STATE_VERSION = 1;

/** Longest line either side sends or accepts, bytes. */
export const MAX_MESSAGE_BYTES = 64 * 1024;

/**
 * Set in the keeper's environment to the absolute state dir it serves, so a daemon can find a
 * keeper that no longer answers on its socket (`/proc/<pid>/environ`) and end it.
 */
export const KEEPER_ENV = "ATOLL_OUTPUT_KEEPER_STATE_DIR";

/** Written by the keeper on fd 3 once it serves; the daemon waits for it. */
export const READY_LINE = "ready\n";

/** Exit status of a keeper that found another keeper serving its state dir. */
export const EXIT_ALREADY_RUNNING = 3;

/** The keeper's files in a state dir. */
export interface KeeperPaths {
  /** `<state_dir>/keeper`, mode 0700. */
  readonly dir: string;
  /** The unix socket, `keeper.sock` (mode 0600). */
  readonly socket: string;
  /** The streams the keeper serves, read at its start: `keeper.json`. */
  readonly stateFile: string;
  /** The keeper's own diagnostics (JSON lines, 1 MiB, one old file): `keeper.log`. */
  readonly log: string;
  /** Whatever the keeper process writes to stderr (Node's own fatal errors), truncated at each start. */
  readonly stderr: string;
  /** One FIFO per agent name. */
  readonly fifoDir: string;
}

/** Paths of the keeper of `stateDir` (absolute when `stateDir` is). */
export function keeperPaths(stateDir: string): KeeperPaths {
  const dir = path.join(stateDir, "keeper");
  return {
    dir,
    socket: path.join(dir, "keeper.sock"),
    stateFile: path.join(dir, "keeper.json"),
    log: path.join(dir, "keeper.log"),
    stderr: path.join(dir, "keeper.stderr"),
    fifoDir: path.join(dir, "fifo"),
  };
}

/** One agent's output: its FIFO, its log file and the log's limits. */
export interface StreamSpec {
  /** Agent name; the stream's key. */
  readonly name: string;
  /** Absolute path of the agent's FIFO. */
  readonly fifo: string;
  /** Absolute path of `<name>.log`; rotated files are `<log>.1` … `<log>.<keep>`. */
  readonly log: string;
  /** Every file holds at most this many bytes (≥ 1). */
  readonly maxBytes: number;
  /** Rotated files kept (0-1000). */
  readonly keep: number;
}

/** Counters of one stream since the keeper started. */
export interface StreamStats {
  /** Bytes of the agent's output written to its log files. */
  readonly written: number;
  /** Bytes of the agent's output that could not be written (disk full...). */
  readonly dropped: number;
  readonly rotations: number;
}

/** What `hello` answers. */
export interface KeeperIdentity {
  readonly protocol: number;
  /** Identifies the keeper's code; see `keeperBuildId` in `keeper-process.ts`. */
  readonly build: string;
  readonly pid: number;
  /** Field 22 of `/proc/<pid>/stat`: with the pid, identifies the process. */
  readonly startTimeTicks: number;
}

/** A request from the daemon; `id` is echoed in the reply. */
export type KeeperRequest =
  | { readonly id: number; readonly op: "hello"; readonly protocol: number; readonly build: string }
  | { readonly id: number; readonly op: "add"; readonly stream: StreamSpec }
  | { readonly id: number; readonly op: "remove"; readonly name: string }
  | { readonly id: number; readonly op: "stats" }
  | { readonly id: number; readonly op: "stop" }
  | { readonly id: number; readonly op: "release" };

/** A reply: `ok` with the op's fields, or an error message. */
export type KeeperReply =
  | ({ readonly id: number; readonly ok: true } & Record<string, unknown>)
  | { readonly id: number; readonly ok: false; readonly error: string };

/** A message as sent: one line of JSON. */
export function encodeMessage(message: object): string {
  return `${JSON.stringify(message)}\n`;
}

/**
 * Splits a byte stream into the JSON messages it carries. A line longer than
 * {@link MAX_MESSAGE_BYTES} makes `push` throw: the peer is broken and the connection should end.
 */
export class MessageDecoder {
  #pending = "";

  /** @returns the messages completed by `chunk`, parsed (a malformed line throws). */
  push(chunk: Buffer | string): unknown[] {
    this.#pending += typeof chunk === "string" ? chunk : chunk.toString("utf8");
    const out: unknown[] = [];
    let newline = this.#pending.indexOf("\n");
    while (newline !== -1) {
      const line = this.#pending.slice(0, newline);
      this.#pending = this.#pending.slice(newline + 1);
      if (line.trim() !== "") out.push(JSON.parse(line));
      newline = this.#pending.indexOf("\n");
    }
    if (this.#pending.length > MAX_MESSAGE_BYTES) {
      throw new Error(`message longer than ${MAX_MESSAGE_BYTES} bytes`);
    }
    return out;
  }
}

/** Agent names are file-name safe (SPEC §2); refuse anything else as a stream name. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** The problem with `value` as a {@link StreamSpec}, or undefined when it is one. */
export function streamSpecProblem(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null) return "stream must be an object";
  const spec = value as Record<string, unknown>;
  if (typeof spec.name !== "string" || !NAME.test(spec.name))
    return "stream.name is not an agent name";
  for (const key of ["fifo", "log"] as const) {
    const p = spec[key];
    if (typeof p !== "string" || !path.isAbsolute(p) || p.includes("\0")) {
      return `stream.${key} must be an absolute path`;
    }
  }
  if (
    typeof spec.maxBytes !== "number" ||
    !Number.isSafeInteger(spec.maxBytes) ||
    spec.maxBytes < 1
  ) {
    return "stream.maxBytes must be a positive integer";
  }
  if (
    typeof spec.keep !== "number" ||
    !Number.isSafeInteger(spec.keep) ||
    spec.keep < 0 ||
    spec.keep > 1000
  ) {
    return "stream.keep must be an integer between 0 and 1000";
  }
  return undefined;
}

/** Only the fields of a {@link StreamSpec} (a message may carry more). */
export function pickStreamSpec(value: StreamSpec): StreamSpec {
  const { name, fifo, log, maxBytes, keep } = value;
  return { name, fifo, log, maxBytes, keep };
}
