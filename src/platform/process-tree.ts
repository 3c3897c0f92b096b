/**
 * An agent's whole process tree (docs/platform.md, "Containment"): its process group, and the
 * descendants that left it (`setsid`). Found exactly through the agent's cgroup where the machine
 * offers one, else through /proc by the environment the descendants inherit (the agent's token:
 * its variable and value, run as the daemon's user). Stopping, memory and the probe's port check
 * ask the tree, so "stopped" means the whole tree is gone.
 */
import type { AgentCgroup } from "./cgroups.ts";
import {
  findProcessesWithEnv,
  isSameProcess,
  listGroupMembers,
  PAGE_SIZE_BYTES,
  readProcStat,
} from "./proc-info.ts";

/** A process known by pid and start time, so that a reused pid is never taken for it. */
export interface ProcessIdentity {
  readonly pid: number;
  readonly startTimeTicks: number;
}

/** An environment entry every member carries (inherited), and the user they run as. */
export interface TreeMarker {
  readonly key: string;
  readonly value: string;
  readonly uid: number;
}

/** What makes up a tree; any combination. */
export interface TreeParts {
  /** The process group led by the agent (signalled as a group: atomic). */
  readonly group?: number | undefined;
  /** The agent's cgroup: every member, whatever its group or session. */
  readonly cgroup?: AgentCgroup | undefined;
  /** Members found by their environment through /proc (no cgroup). */
  readonly marker?: TreeMarker | undefined;
  /** Particular processes (leftovers of an earlier run, proven ours one by one). */
  readonly processes?: readonly ProcessIdentity[] | undefined;
}

/** How the members of a tree are found: for logs and docs. */
export type TreeMechanism = "cgroup" | "environment" | "process-group";

export interface ProcessTree {
  /** The process group of the tree (the agent's pid), or 0 for a set of leftovers. */
  readonly group: number;
  readonly mechanism: TreeMechanism;
  /** The cgroup, when the tree has one. */
  readonly cgroup: AgentCgroup | undefined;
  /** Pids of the live members (not zombies). */
  members(): number[];
  /** True while any member lives. */
  alive(): boolean;
  /** `signal` to every member: the group as a group, each member outside it by pid. */
  signal(signal: NodeJS.Signals): void;
  /** SIGKILL to every member (v2's `cgroup.kill`, which also stops a fork racing it). */
  kill(): void;
  /** Resident memory of the members in bytes, when membership is exact (a cgroup); else undefined. */
  residentBytes(): number | undefined;
  /** Removes what held the tree (its cgroup) once it is gone. Idempotent. */
  release(): void;
}

/** kill(-pgid, signal); false when no member is left (ESRCH). EPERM counts as alive. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Gone meanwhile.
  }
}

/** True while group `pgid` has a member that is more than a zombie. */
function groupAlive(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  try {
    return listGroupMembers(pgid).length > 0;
  } catch {
    return true; // No /proc to ask: trust kill().
  }
}

/** The tree made of `parts`. */
export function processTree(parts: TreeParts): ProcessTree {
  const { group, cgroup, marker, processes = [] } = parts;
  let released = false;
  const marked = (): number[] =>
    marker === undefined
      ? []
      : findProcessesWithEnv(marker.key, marker.value, marker.uid).map((s) => s.pid);
  const known = (): number[] =>
    processes.filter((p) => isSameProcess(p.pid, p.startTimeTicks)).map((p) => p.pid);
  /** Members outside the group, which a signal to the group does not reach. */
  const outsideGroup = (): number[] => {
    const pids = new Set([...(cgroup?.pids() ?? []), ...marked(), ...known()]);
    if (group === undefined) return [...pids];
    return [...pids].filter((pid) => readProcStat(pid)?.pgrp !== group);
  };
  return {
    group: group ?? 0,
    mechanism:
      cgroup !== undefined ? "cgroup" : marker !== undefined ? "environment" : "process-group",
    cgroup,
    members() {
      const pids = new Set([
        ...(group === undefined ? [] : listGroupMembers(group).map((m) => m.pid)),
        ...(cgroup?.pids() ?? []),
        ...marked(),
        ...known(),
      ]);
      return [...pids];
    },
    alive() {
      if (cgroup?.populated()) return true;
      if (group !== undefined && groupAlive(group)) return true;
      return known().length > 0 || marked().length > 0;
    },
    signal(signal) {
      if (group !== undefined) signalGroup(group, signal);
      for (const pid of outsideGroup()) signalPid(pid, signal);
    },
    kill() {
      cgroup?.kill();
      if (group !== undefined) signalGroup(group, "SIGKILL");
      for (const pid of [...marked(), ...known()]) signalPid(pid, "SIGKILL");
    },
    residentBytes() {
      if (cgroup === undefined) return undefined;
      let pages = 0;
      for (const pid of cgroup.pids()) pages += readProcStat(pid)?.rssPages ?? 0;
      return pages * PAGE_SIZE_BYTES;
    },
    release() {
      if (released) return;
      released = true;
      cgroup?.remove();
    },
  };
}
