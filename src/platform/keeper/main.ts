/**
 * Entry point of the output keeper process (docs/platform.md, "Lifecycle of the keeper"):
 *
 *   node --max-semi-space-size=1 main.ts --state-dir DIR --build ID
 *
 * Spawned by the daemon in its own session; serves the protocol of `protocol.ts` on
 * `<DIR>/keeper/keeper.sock` until told to stop or release, or until SIGTERM/SIGINT. Exits 3
 * without touching any FIFO when another keeper already serves DIR. Node builtins and the three
 * keeper modules only: its resident memory is the point.
 */
import { chmodSync, closeSync, mkdirSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import path from "node:path";
import { parseArgs } from "node:util";
import { BoundedLog } from "./bounded-log.ts";
import { Keeper, type KeeperLog } from "./keeper.ts";
import {
  EXIT_ALREADY_RUNNING,
  encodeMessage,
  KEEPER_PROTOCOL,
  type KeeperReply,
  keeperPaths,
  MessageDecoder,
  READY_LINE,
} from "./protocol.ts";

/** Socket name inside the keeper's directory, which is its working directory. */
const SOCKET_NAME = "keeper.sock";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { "state-dir": { type: "string" }, build: { type: "string" } },
  strict: true,
});
const stateDir = path.resolve(values["state-dir"] ?? "");
const build = values.build ?? "unknown";
const paths = keeperPaths(stateDir);

mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
chmodSync(paths.dir, 0o700);
// Relative socket path: a state dir of any length fits in sun_path's 108 bytes.
process.chdir(paths.dir);

const diagnostics = new BoundedLog(paths.log, { maxBytes: 1024 * 1024, keep: 1 });
const log: KeeperLog = (level, message, fields = {}) => {
  const line = { time: new Date().toISOString(), level, msg: message, pid: process.pid, ...fields };
  diagnostics.write(Buffer.from(`${JSON.stringify(line)}\n`));
};

/** Field 22 of /proc/self/stat: with the pid, tells this process from a later one. */
function ownStartTimeTicks(): number {
  const text = readFileSync("/proc/self/stat", "utf8");
  return Number(text.slice(text.lastIndexOf(")") + 2).split(" ")[19]);
}

/** True when a keeper answers `hello` on the socket within 2 s. */
function anotherKeeperAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(SOCKET_NAME);
    const done = (answer: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    // Connected but silent counts as alive: a hung keeper still owns its FIFOs.
    const timer = setTimeout(() => done(true), 2_000);
    socket.on("error", () => done(false));
    socket.on("connect", () => {
      socket.write(encodeMessage({ id: 0, op: "hello", protocol: KEEPER_PROTOCOL, build }));
    });
    socket.on("data", () => done(true));
  });
}

const keeper = new Keeper(paths.stateFile, log);
const connections = new Set<Socket>();
let server: Server | undefined;
let exiting = false;

/** Drains and closes every stream, removes the socket, then exits once `reply` is sent. */
function finish(reason: string, reply?: { socket: Socket; message: KeeperReply }): void {
  if (exiting) return;
  exiting = true;
  server?.close();
  keeper.closeAll();
  try {
    unlinkSync(SOCKET_NAME);
  } catch {
    // Already removed (or never created).
  }
  log("info", "keeper exits", { reason });
  diagnostics.close();
  if (reply === undefined) process.exit(0);
  reply.socket.write(encodeMessage(reply.message), () => process.exit(0));
  // A peer that stopped reading must not keep the keeper alive.
  setTimeout(() => process.exit(0), 1_000).unref();
}

function handle(socket: Socket, request: unknown): void {
  const { id, op } = (request ?? {}) as { id?: unknown; op?: unknown };
  const replyId = typeof id === "number" ? id : -1;
  const send = (message: KeeperReply): void => {
    if (!socket.destroyed) socket.write(encodeMessage(message));
  };
  try {
    const fields = request as Record<string, unknown>;
    switch (op) {
      case "hello":
        send({
          id: replyId,
          ok: true,
          protocol: KEEPER_PROTOCOL,
          build,
          pid: process.pid,
          startTimeTicks,
        });
        return;
      case "add":
        keeper.add(fields.stream);
        send({ id: replyId, ok: true });
        return;
      case "remove":
        keeper.remove(String(fields.name));
        send({ id: replyId, ok: true });
        return;
      case "stats":
        send({ id: replyId, ok: true, streams: keeper.stats() });
        return;
      case "stop":
      case "release":
        finish(op, { socket, message: { id: replyId, ok: true } });
        return;
      default:
        send({ id: replyId, ok: false, error: `unknown op ${JSON.stringify(op)}` });
    }
  } catch (error) {
    send({ id: replyId, ok: false, error: error instanceof Error ? error.message : String(error) });
  }
}

function serve(socket: Socket): void {
  connections.add(socket);
  const decoder = new MessageDecoder();
  socket.on("data", (chunk: Buffer) => {
    let messages: unknown[];
    try {
      messages = decoder.push(chunk);
    } catch (error) {
      log("warn", "malformed message; closing the connection", { error: String(error) });
      socket.destroy();
      return;
    }
    for (const message of messages) handle(socket, message);
  });
  socket.on("error", () => socket.destroy());
  socket.on("close", () => connections.delete(socket));
}

const startTimeTicks = ownStartTimeTicks();

process.on("SIGTERM", () => finish("SIGTERM"));
process.on("SIGINT", () => finish("SIGINT"));
process.on("SIGHUP", () => log("info", "SIGHUP ignored"));
// An error escaping a callback must not end the keeper: while no daemon runs, nothing would
// start another, and the agents would block once their pipes are full.
process.on("uncaughtException", (error: Error) => {
  log("error", "uncaught exception", { error: error.stack ?? String(error) });
});

if (await anotherKeeperAnswers()) {
  log("error", "another output keeper serves this state dir; exiting", { stateDir });
  process.exit(EXIT_ALREADY_RUNNING);
}
try {
  unlinkSync(SOCKET_NAME); // left by a keeper that was killed
} catch {
  // No stale socket.
}
// The streams first: the agents' pipes are drained before anyone talks to this keeper.
keeper.restore();
server = createServer(serve);
server.on("error", (error: Error) => {
  log("error", "cannot listen", { error: error.message });
  process.exit(1);
});
server.listen(SOCKET_NAME, () => {
  chmodSync(SOCKET_NAME, 0o600);
  log("info", "keeper serving", { stateDir, build, protocol: KEEPER_PROTOCOL });
  try {
    writeSync(3, READY_LINE);
    closeSync(3);
  } catch {
    // Started by hand, without a readiness pipe.
  }
});
