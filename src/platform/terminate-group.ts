/**
 * Stopping an agent's whole process tree (SPEC §4): SIGTERM to the group (and to each member that
 * left it, `setsid`), a grace period, SIGKILL to them all, and a result only once every member
 * (grandchildren included) is really gone, so "stopped" is never reported while a helper process
 * may still hold the port. The tree's members come from `process-tree.ts` (cgroup, or /proc).
 */

import { listGroupMembers, readProcessGroup } from "./proc-info.ts";
import type { ProcessTree } from "./process-tree.ts";

/** Options of {@link terminateGroup}. */
export interface TerminateGroupOptions {
  /** Grace between SIGTERM and SIGKILL, in milliseconds. */
  readonly stopTimeoutMs: number;
  /**
   * Settles when the group leader has exited and been reaped (the `exited` promise of a spawned
   * agent). Give it for the daemon's own children: until Node reaps the leader, the group still
   * exists as a zombie. Omit it for adopted agents, whose leader another parent reaps.
   */
  readonly exited?: Promise<unknown>;
  /**
   * Aborting cuts the grace short: SIGKILL goes to the group at once, and the call still resolves
   * only when the group is gone (a second Ctrl-C forcing the shutdown).
   */
  readonly signal?: AbortSignal;
  /** Longest pause between checks of the group once the leader is gone, in milliseconds. Default 100. */
  readonly maxPollIntervalMs?: number;
  /**
   * The agent's whole tree (its group is `pgid`): signalled, killed and waited for as a whole,
   * members outside the group included. Without it, the process group alone.
   */
  readonly tree?: ProcessTree | undefined;
}

/** Outcome of {@link terminateGroup}. */
export interface TerminateResult {
  /** True when SIGKILL had to be sent (the grace ran out, or `signal` aborted). */
  readonly killed: boolean;
}

/** kill(-pgid, signal); false when the group no longer exists (ESRCH). */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // EPERM: members exist that we may not signal (another user's process reusing the id).
    if (code === "EPERM") return true;
    if (code === "ESRCH") return false;
    throw error;
  }
}

/**
 * True while process group `pgid` has a live member. `kill(-pgid, 0)` answers first; when it says
 * the group exists, `/proc` is asked whether any member is more than a zombie, since an exited
 * process whose parent does not reap it is not running and holds no port.
 */
export function isGroupAlive(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  try {
    return listGroupMembers(pgid).length > 0;
  } catch {
    // No /proc to ask: trust kill().
    return true;
  }
}

function assertSafePgid(pgid: number): void {
  // kill(-1) signals every process we may signal and kill(-0) our own group: never do either.
  if (!Number.isSafeInteger(pgid) || pgid <= 1) {
    throw new RangeError(`refusing to signal process group ${pgid}`);
  }
  if (readProcessGroup(process.pid) === pgid) {
    throw new RangeError(`refusing to signal process group ${pgid}: it is the daemon's own group`);
  }
}

/**
 * Terminates process group `pgid`: SIGTERM to the group, then waits until the leader has exited
 * (via `exited` when given) and no live member remains, polling `kill(-pgid, 0)` at short,
 * growing intervals; after `stopTimeoutMs` (or when `signal` aborts) sends SIGKILL to the group and
 * keeps waiting. Resolves only on the real end of the group, with `killed` telling whether SIGKILL
 * was needed; a group that is already gone resolves with `killed: false`. No timer or listener
 * outlives the call.
 * @throws RangeError for pgid 0, 1, negative ids, or the daemon's own group.
 */
export async function terminateGroup(
  pgid: number,
  options: TerminateGroupOptions,
): Promise<TerminateResult> {
  assertSafePgid(pgid);
  const { exited, signal, tree } = options;
  const maxPollIntervalMs = options.maxPollIntervalMs ?? 100;
  const alive = (): boolean => (tree === undefined ? isGroupAlive(pgid) : tree.alive());

  let leaderGone = exited === undefined;
  let killed = false;
  let wake: (() => void) | undefined;
  const poke = (): void => wake?.();

  const escalate = (): void => {
    if (killed) return;
    // Members that are all zombies need no SIGKILL: they are dead already.
    if (alive()) {
      if (tree === undefined) killed = signalGroup(pgid, "SIGKILL");
      else {
        tree.kill();
        killed = true;
      }
    }
    poke();
  };

  exited?.then(
    () => {
      leaderGone = true;
      poke();
    },
    () => {
      leaderGone = true;
      poke();
    },
  );

  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  if (signal?.aborted) {
    escalate();
  } else {
    if (tree === undefined) signalGroup(pgid, "SIGTERM");
    else tree.signal("SIGTERM");
    graceTimer = setTimeout(escalate, options.stopTimeoutMs);
    signal?.addEventListener("abort", escalate, { once: true });
  }

  try {
    let pollIntervalMs = 5;
    while (!(leaderGone && !alive())) {
      // Before the leader is reaped only its exit, the grace timer or an abort can change
      // anything, so the poll runs only when there is no leader promise to wait on.
      const pollMs = leaderGone || exited === undefined ? pollIntervalMs : undefined;
      await new Promise<void>((resolve) => {
        const timer = pollMs === undefined ? undefined : setTimeout(done, pollMs);
        wake = done;
        function done(): void {
          if (timer !== undefined) clearTimeout(timer);
          wake = undefined;
          resolve();
        }
      });
      if (pollMs !== undefined) pollIntervalMs = Math.min(pollIntervalMs * 2, maxPollIntervalMs);
    }
  } finally {
    if (graceTimer !== undefined) clearTimeout(graceTimer);
    signal?.removeEventListener("abort", escalate);
  }
  return { killed };
}

/**
 * Ends a tree that has no leader of ours any more (what a dead agent left behind, found at a
 * daemon's start and proven ours member by member: docs/operations.md): SIGTERM to every member,
 * the grace, SIGKILL, and resolves once all are gone, with how many there were (0: nothing to do).
 */
export async function terminateTree(
  tree: ProcessTree,
  options: Pick<TerminateGroupOptions, "stopTimeoutMs" | "signal" | "maxPollIntervalMs">,
): Promise<{ members: number; killed: boolean }> {
  const members = tree.members().length;
  if (members === 0) return { members, killed: false };
  let killed = false;
  const escalate = (): void => {
    if (killed || !tree.alive()) return;
    tree.kill();
    killed = true;
  };
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  if (options.signal?.aborted) escalate();
  else {
    tree.signal("SIGTERM");
    graceTimer = setTimeout(escalate, options.stopTimeoutMs);
    options.signal?.addEventListener("abort", escalate, { once: true });
  }
  try {
    let pollIntervalMs = 5;
    while (tree.alive()) {
      await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
      pollIntervalMs = Math.min(pollIntervalMs * 2, options.maxPollIntervalMs ?? 100);
    }
  } finally {
    clearTimeout(graceTimer);
    options.signal?.removeEventListener("abort", escalate);
  }
  return { members, killed };
}
