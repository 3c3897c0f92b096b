/**
 * Getting a Unix socket path ready to bind (SPEC §3 `listen = unix:/path`): a socket file left by
 * a daemon that was killed (nothing accepts on it any more) is removed, so an automatic restart
 * comes back instead of failing with EADDRINUSE forever; a live socket, or a path that is not a
 * socket at all, is refused and left untouched.
 */
import { lstat, unlink } from "node:fs/promises";
import { connect } from "node:net";

/** How long a connect to an existing socket may take before it counts as live but hung. */
const PROBE_TIMEOUT_MS = 1_000;

/** What was at the path before the bind. */
export type SocketPathState = "free" | "stale-removed";

/** Thrown when the path cannot be bound: someone listens on it, or it is not a socket. */
export class SocketPathBusy extends Error {
  override readonly name = "SocketPathBusy";
}

/** Resolves with how `path` answered a connect: accepted, refused, or no socket there. */
function probe(path: string): Promise<"live" | "refused" | "missing"> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    const finish = (verdict: "live" | "refused" | "missing"): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(verdict);
    };
    // A server that accepts nothing within the timeout is still a process holding the socket.
    const timer = setTimeout(() => finish("live"), PROBE_TIMEOUT_MS);
    socket.once("connect", () => finish("live"));
    socket.once("error", (error: NodeJS.ErrnoException) =>
      finish(
        error.code === "ENOENT" ? "missing" : error.code === "ECONNREFUSED" ? "refused" : "live",
      ),
    );
  });
}

/**
 * Makes `path` bindable: nothing there is fine; a socket nobody accepts on is removed.
 * @throws SocketPathBusy when a server accepts on the socket, or the path is not a socket.
 */
export async function prepareSocketPath(path: string): Promise<SocketPathState> {
  let stats: Awaited<ReturnType<typeof lstat>>;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "free";
    throw error;
  }
  if (!stats.isSocket()) {
    throw new SocketPathBusy(`${path} exists and is not a socket; not removing it`);
  }
  const verdict = await probe(path);
  if (verdict === "live") {
    throw new SocketPathBusy(`another server is listening on ${path}`);
  }
  if (verdict === "missing") return "free";
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
  return "stale-removed";
}

/** Removes the socket file after the server closed (a clean exit leaves nothing behind). */
export async function removeSocketPath(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
}
