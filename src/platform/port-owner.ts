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
} from "./proc-info.ts";
import type { ProcessTree } from "./process-tree.ts";

/**
 * The process outside `tree` holding a listening socket on `port` (pid 0 when it cannot be
 * seen, e.g. another user's without root); undefined when every listening socket on the port is
 * the tree's, or when none is listed (nothing to tell: another network namespace).
 */
export function foreignListener(port: number, tree: ProcessTree): PortHolder | undefined {
  const left = socketInodesOnPort(port, { bound: false });
  if (left.size === 0) return undefined;
  const take = (pid: number): boolean => {
    for (const inode of socketsHeldBy(pid, left)) left.delete(inode);
    return left.size === 0;
  };
  if (tree.group > 0 && take(tree.group)) return undefined;
  for (const pid of tree.members()) {
    if (pid !== tree.group && take(pid)) return undefined;
  }
  return findSocketHolder(left) ?? { pid: 0, command: "?" };
}
