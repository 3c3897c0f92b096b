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
  listeningInodesByPort,
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
   * (default 10 000).
   */
  readonly maxAgeMs?: number;
  readonly now?: () => number;
  /**
   * All listening socket inodes by port, read now (the /proc tables by default, in the thread
   * pool; tests count the reads).
   */
  readonly readListeners?: () => Promise<Map<number, Set<string>>>;
}

/** A port-owner check: the foreign holder of `port`, or undefined when the tree holds it. */
export type PortOwnerCheck = (
  port: number,
  tree: ProcessTree,
  /** When the probe that was answered began (`now()`'s clock): the tables must be newer. */
  probedAtMs: number,
) => Promise<PortHolder | undefined>;

/**
 * {@link foreignListener} for many agents at once, cheaply:
 *
 * - a memory per tree: after a check passed, the next ones within `maxAgeMs` only ask whether the
 *   tree still holds the same listening sockets (its fds, tens of microseconds);
 * - one read of the socket tables serves every check whose probe began before the read did
 *   (agents started together probe in step, so a round of a hundred liveness probes costs a read
 *   or two instead of a hundred). That is sound because the server that answered a probe was
 *   listening when the probe connected, after it began, so it is in any table read since; a read
 *   that shows nothing on the port is repeated fresh before it counts as "nothing to tell".
 *
 * A foreign listener added meanwhile on another address of the port (the agent on ::1, another
 * process on 127.0.0.1) is seen within `maxAgeMs`. The first successful probe of every process
 * (its start) always reads the tables.
 */
export function createPortOwnerCheck(options: PortOwnerCheckOptions = {}): PortOwnerCheck {
  const maxAgeMs = options.maxAgeMs ?? 10_000;
  const now = options.now ?? (() => performance.now());
  const readListeners = options.readListeners ?? listeningInodesByPort;
  const passed = new WeakMap<ProcessTree, { port: number; inodes: Set<string>; atMs: number }>();
  let latest: { readonly startedAtMs: number; readonly tables: Promise<Map<number, Set<string>>> };
  latest = { startedAtMs: Number.NEGATIVE_INFINITY, tables: Promise.resolve(new Map()) };
  const listenersSince = async (port: number, sinceMs: number): Promise<Set<string>> => {
    if (latest.startedAtMs < sinceMs) latest = { startedAtMs: now(), tables: readListeners() };
    return (await latest.tables).get(port) ?? new Set();
  };
  return async (port, tree, probedAtMs) => {
    const last = passed.get(tree);
    if (
      last !== undefined &&
      last.port === port &&
      now() - last.atMs < maxAgeMs &&
      notHeldBy(tree, last.inodes).size === 0
    ) {
      return undefined;
    }
    let inodes = await listenersSince(port, probedAtMs);
    // Nothing listening in a shared read: make sure with one of our own.
    if (inodes.size === 0) inodes = await listenersSince(port, now());
    const holder = foreignListener(port, tree, () => inodes);
    if (holder === undefined && inodes.size > 0) passed.set(tree, { port, inodes, atMs: now() });
    else passed.delete(tree);
    return holder;
  };
}
