/**
 * TCP sockets from Linux `/proc`: the sockets on a local port (`/proc/net/tcp` and `tcp6`) and
 * which processes hold them (`/proc/<pid>/fd`). Port leasing names a port's holder with them;
 * the probe's port-owner check asks whether the agent's tree holds the port's listeners.
 */

import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { listPids, readProcStat } from "./proc-info.ts";

/** A process that holds a listening TCP socket. */
export interface PortHolder {
  readonly pid: number;
  /** Executable name from `/proc/<pid>/stat`. */
  readonly command: string;
}

/**
 * Socket inodes of TCP sockets on local port `port`, IPv4 and IPv6: listening ones, and with
 * `bound` also those merely bound (state CLOSE), which block a bind as well.
 */
export function socketInodesOnPort(port: number, options: { bound?: boolean } = {}): Set<string> {
  const bound = options.bound ?? true;
  const inodes = new Set<string>();
  const wantedPort = port.toString(16).toUpperCase().padStart(4, "0");
  for (const table of TCP_TABLES) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue; // No IPv6 in this kernel, or not Linux.
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const state = fields[3];
      const inode = fields[9];
      if (local === undefined || state === undefined || inode === undefined) continue;
      // 0A = LISTEN, 07 = CLOSE (bound, not listening); established connections do not block bind.
      const wanted = state === "0A" || (bound && state === "07");
      if (wanted && local.endsWith(`:${wantedPort}`) && inode !== "0") {
        inodes.add(inode);
      }
    }
  }
  return inodes;
}

/** The kernel's TCP socket tables, IPv4 then IPv6. */
const TCP_TABLES = ["/proc/net/tcp", "/proc/net/tcp6"] as const;

/**
 * Socket inodes of every listening TCP socket (IPv4 and IPv6), by local port, read off the
 * tables in libuv's thread pool. Reading a table makes the kernel walk its whole connection
 * hash (about 1 ms per file here), which must not stop the event loop: the port-owner check of a
 * hundred agents' aligned liveness rounds used to block it for a few hundred milliseconds.
 */
export async function listeningInodesByPort(): Promise<Map<number, Set<string>>> {
  const texts = await Promise.all(
    TCP_TABLES.map((table) => readFile(table, "utf8").catch(() => "")), // no IPv6, or not Linux
  );
  const byPort = new Map<number, Set<string>>();
  for (const text of texts) {
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const inode = fields[9];
      // 0A = LISTEN.
      if (local === undefined || fields[3] !== "0A" || inode === undefined || inode === "0")
        continue;
      const port = Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      const inodes = byPort.get(port) ?? new Set<string>();
      inodes.add(inode);
      byPort.set(port, inodes);
    }
  }
  return byPort;
}

/**
 * Best effort: the process holding local TCP port `port` (in this network namespace), found by
 * matching socket inodes in `/proc/net/tcp{,6}` against `/proc/<pid>/fd`. Undefined when nobody
 * visible holds it, or when `/proc` does not tell (other users' fds without root). Scans every
 * process: call it on error paths only.
 */
export function findPortHolder(port: number): PortHolder | undefined {
  return findSocketHolder(socketInodesOnPort(port));
}

/**
 * The first process found holding one of the socket `inodes` (scans every process's fds); undefined
 * when none visible does.
 */
export function findSocketHolder(inodes: ReadonlySet<string>): PortHolder | undefined {
  if (inodes.size === 0) return undefined;
  for (const pid of listPids()) {
    if (socketsHeldBy(pid, inodes).size > 0) {
      return { pid, command: readProcStat(pid)?.comm ?? "?" };
    }
  }
  return undefined;
}

/**
 * Which of the socket `inodes` process `pid` holds open (its `/proc/<pid>/fd` links read as
 * `socket:[inode]`); empty when none, or when its fds cannot be read (gone, another user's).
 */
export function socketsHeldBy(pid: number, inodes: ReadonlySet<string>): Set<string> {
  const held = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return held; // Gone, or not ours to look at.
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // The fd closed while we looked.
    }
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match?.[1] !== undefined && inodes.has(match[1])) held.add(match[1]);
  }
  return held;
}
