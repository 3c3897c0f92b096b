/**
 * The daemon's connection to an output keeper: requests and replies of `keeper/protocol.ts`
 * over the keeper's unix socket, matched by id, each with a timeout.
 */
import { closeSync, constants, openSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import path from "node:path";
import { encodeMessage, type KeeperRequest, MessageDecoder } from "./keeper/protocol.ts";

/** Longest unix socket path Linux takes (sun_path is 108 bytes with the terminating NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** The keeper answered a request with `ok: false`. */
export class KeeperRequestError extends Error {
  override readonly name = "KeeperRequestError";
}

/** The connection closed, or a reply did not come in time. */
export class KeeperUnavailableError extends Error {
  override readonly name = "KeeperUnavailableError";
}

type Op = KeeperRequest["op"];
type Fields<O extends Op> = Omit<Extract<KeeperRequest, { op: O }>, "id" | "op">;

interface Pending {
  readonly resolve: (reply: Record<string, unknown>) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class KeeperConnection {
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #decoder = new MessageDecoder();
  #nextId = 1;
  #closed = false;
  readonly #onClose: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      let messages: unknown[];
      try {
        messages = this.#decoder.push(chunk);
      } catch {
        socket.destroy(); // a broken keeper; 'close' settles what is pending
        return;
      }
      for (const message of messages) this.#settle(message);
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      this.#closed = true;
      for (const [id, pending] of this.#pending) {
        clearTimeout(pending.timer);
        pending.reject(new KeeperUnavailableError("the output keeper closed the connection"));
        this.#pending.delete(id);
      }
      for (const listener of this.#onClose.splice(0)) listener();
    });
  }

  /**
   * Connects to the keeper's socket. A socket path longer than Linux allows is reached through
   * `/proc/self/fd/<dir fd>/` of its directory.
   * @returns undefined when nobody listens there (no socket file, or connection refused).
   */
  static connect(socketPath: string): Promise<KeeperConnection | undefined> {
    let dirFd: number | undefined;
    let target = socketPath;
    if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
      dirFd = openSync(path.dirname(socketPath), constants.O_RDONLY | constants.O_DIRECTORY);
      target = `/proc/self/fd/${dirFd}/${path.basename(socketPath)}`;
    }
    return new Promise((resolve) => {
      const socket = createConnection(target);
      const done = (connection: KeeperConnection | undefined): void => {
        if (dirFd !== undefined) closeSync(dirFd);
        dirFd = undefined;
        resolve(connection);
      };
      socket.once("connect", () => {
        socket.removeAllListeners("error");
        done(new KeeperConnection(socket));
      });
      socket.once("error", () => {
        socket.destroy();
        done(undefined);
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Runs `listener` once the connection has closed (at once when it has). */
  onClose(listener: () => void): void {
    if (this.#closed) listener();
    else this.#onClose.push(listener);
  }

  /**
   * Sends one request and resolves with the reply's fields.
   * @throws KeeperRequestError when the keeper refused it; KeeperUnavailableError when the
   *   connection closed or no reply came within `timeoutMs`.
   */
  request<O extends Op>(
    op: O,
    fields: Fields<O>,
    timeoutMs: number,
  ): Promise<Record<string, unknown>> {
    if (this.#closed) {
      return Promise.reject(new KeeperUnavailableError("the output keeper connection is closed"));
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new KeeperUnavailableError(`the output keeper did not answer ${op} in ${timeoutMs} ms`),
        );
      }, timeoutMs);
      timer.unref();
      this.#pending.set(id, { resolve, reject, timer });
      this.#socket.write(encodeMessage({ id, op, ...fields }));
    });
  }

  /** Closes the connection (pending requests reject). */
  destroy(): void {
    this.#socket.destroy();
  }

  #settle(message: unknown): void {
    const reply = message as { id?: unknown; ok?: unknown; error?: unknown };
    if (typeof reply.id !== "number") return;
    const pending = this.#pending.get(reply.id);
    if (pending === undefined) return;
    this.#pending.delete(reply.id);
    clearTimeout(pending.timer);
    if (reply.ok === true) pending.resolve(message as Record<string, unknown>);
    else pending.reject(new KeeperRequestError(String(reply.error ?? "refused")));
  }
}
