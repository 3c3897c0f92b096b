/**
 * Whose is the server that answered a probe (docs/platform.md, "Health probes"): a probe answered
 * on the agent's port proves nothing when another process holds the port (a foreign server that
 * grabbed it while the agent was in BACKOFF). The listening sockets on the port, from
 * `/proc/net/tcp` and `tcp6`, must all be held by members of the agent's tree (their inodes
 * among `/proc/<pid>/fd`). Run only after a probe succeeded: the leader is checked first (it is
 * the listener nearly always), the rest of the tree only when it does not hold them all.
 */
import {
  findSocketHolder,
  type PortHolder,
  socketInodesOnPort,
  socketsHeldBy,
} from "./proc-sockets.ts";
import type { ProcessTree } from "./process-tree.ts";

/** Members of `tree` holding the sockets `inodes`, leader first; the inodes no member holds. */
function notHeldBy(tree: ProcessTree, inodes: ReadonlySet<string>): Set<string> {
  const left = new Set(inodes);
  const take = (pid: number): boolean => {
    for (const inode of socketsHeldBy(pid, left)) left.delete(inode);
    return left.size === 0;
  };
  if (tree.group > 0 && take(tree.group)) return left;
  for (const pid of tree.members()) {
    if (pid !== tree.group && take(pid)) return left;
  }
  return left;
}

/**
 * The process outside `tree` holding a listening socket on `port` (pid 0 when it cannot be
 * seen, e.g. another user's without root); undefined when every listening socket on the port is
 * the tree's, or when none is listed (nothing to tell: another network namespace).
 */
export function foreignListener(
  port: number,
  tree: ProcessTree,
  listeners: (port: number) => Set<string> = (p) => socketInodesOnPort(p, { bound: false }),
): PortHolder | undefined {
  const inodes = listeners(port);
  if (inodes.size === 0) return undefined;
  const left = notHeldBy(tree, inodes);
  return left.size === 0 ? undefined : (findSocketHolder(left) ?? { pid: 0, command: "?" });
}

/** Options of {@link createPortOwnerCheck}. */
export interface PortOwnerCheckOptions {
  /**
   * How long a passed check is trusted while the tree still holds the very sockets it had, ms
   * (default 10 000). Reading `/proc/net/tcp` walks the kernel's whole connection table (about
   * 1 ms per file with 262,144 buckets, measured), so a liveness round does it at most this
   * often per agent.
   */
  readonly maxAgeMs?: number;
  readonly now?: () => number;
  /** The LISTEN socket inodes on a port (the /proc tables by default; tests count the reads). */
  readonly listeners?: (port: number) => Set<string>;
}

/**
 * {@link foreignListener} with a memory per tree: after a check passed, the next ones within
 * `maxAgeMs` only ask whether the tree still holds the same listening sockets (its fds, tens of
 * microseconds); the tables are read again when it does not, or when the memory is older. The
 * first successful probe of every process (its start) always reads them. A foreign listener
 * added meanwhile on another address of the port (the agent on ::1, another process on
 * 127.0.0.1) is seen within `maxAgeMs`.
 */
export function createPortOwnerCheck(
  options: PortOwnerCheckOptions = {},
): (port: number, tree: ProcessTree) => PortHolder | undefined {
  const maxAgeMs = options.maxAgeMs ?? 10_000;
  const now = options.now ?? (() => performance.now());
  const listeners = options.listeners ?? ((p) => socketInodesOnPort(p, { bound: false }));
  const passed = new WeakMap<ProcessTree, { port: number; inodes: Set<string>; atMs: number }>();
  return (port, tree) => {
    const last = passed.get(tree);
    if (
      last !== undefined &&
      last.port === port &&
      now() - last.atMs < maxAgeMs &&
      notHeldBy(tree, last.inodes).size === 0
    ) {
      return undefined;
    }
    const inodes = listeners(port);
    const holder = foreignListener(port, tree, () => inodes);
    if (holder === undefined && inodes.size > 0) passed.set(tree, { port, inodes, atMs: now() });
    else passed.delete(tree);
    return holder;
  };
}
