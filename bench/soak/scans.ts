/**
 * /proc checks of the soak: which process groups each agent has (exactly one at most: a second
 * one is a duplicate the daemon started beside an agent it should have adopted), and whether a
 * pid still belongs to this run before the soak sends it a signal.
 */
import { readFileSync } from "node:fs";
import { RUN_MARKER_VAR } from "../lib/fixture.ts";
import { findMarkedProcesses } from "../lib/procfs.ts";

/** Agent name → process group ids of this run's live processes carrying that name. */
export function groupsByAgent(marker: string): Map<string, Set<number>> {
  const groups = new Map<string, Set<number>>();
  for (const p of findMarkedProcesses(marker)) {
    let name: string | undefined;
    try {
      const env = readFileSync(`/proc/${p.pid}/environ`, "latin1").split("\0");
      name = env.find((e) => e.startsWith("ATOLL_AGENT_NAME="))?.slice("ATOLL_AGENT_NAME=".length);
    } catch {
      continue; // exited meanwhile
    }
    if (name === undefined) continue;
    const set = groups.get(name) ?? new Set<number>();
    set.add(p.pgrp);
    groups.set(name, set);
  }
  return groups;
}

/** True when `pid` is alive and carries this run's marker (safe to signal). */
export function isOurs(pid: number, marker: string): boolean {
  if (!(pid > 0)) return false;
  try {
    return readFileSync(`/proc/${pid}/environ`, "latin1").includes(`${RUN_MARKER_VAR}=${marker}\0`);
  } catch {
    return false;
  }
}

export interface StrayGroup {
  readonly name: string;
  readonly pgid: number;
  /** The agent's pid as the daemon reported it (0 when it reports none). */
  readonly reported: number;
}

/**
 * Process groups of this run's agents that are not the agent's current process as the daemon
 * reports it, in two scans `gapMs` apart (the same group both times, so a group that was just
 * being stopped or reaped is not counted): a duplicate started beside an agent that should have
 * been adopted, or the leftovers of an agent the daemon no longer supervises. Undefined when the
 * daemon could not be asked (it is down).
 */
export async function strayGroups(
  marker: string,
  reportedPids: () => Promise<ReadonlyMap<string, number> | undefined>,
  gapMs: number,
): Promise<StrayGroup[] | undefined> {
  const first = groupsByAgent(marker);
  const reportedBefore = await reportedPids();
  await new Promise((resolve) => setTimeout(resolve, gapMs));
  const second = groupsByAgent(marker);
  const reportedAfter = await reportedPids();
  if (reportedBefore === undefined || reportedAfter === undefined) return undefined;
  const stray: StrayGroup[] = [];
  for (const [name, groups] of first) {
    for (const pgid of groups) {
      if (second.get(name)?.has(pgid) !== true) continue;
      if (pgid === reportedBefore.get(name) || pgid === reportedAfter.get(name)) continue;
      stray.push({ name, pgid, reported: reportedAfter.get(name) ?? 0 });
    }
  }
  return stray;
}
