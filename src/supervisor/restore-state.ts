/**
 * Restoring the previous run at a daemon's start (SPEC §5; docs/operations.md, "Which processes
 * are ours"): what state.json recorded, checked against what runs. Only processes proven ours
 * (the daemon's user and the agent's token: `agent-ownership.ts`) and the members of the agents'
 * cgroups are ever adopted or signalled; a recorded pid is adopted only when its start time and
 * command line match the record too. An agent recorded as stopped is never brought back by what
 * is found: its processes are stopped, and the log says so.
 */
import { DEFINITION_DEFAULTS } from "../config/parse-definition.ts";
import type { Logger } from "../core/logger.ts";
import { adoptProcess } from "../platform/adopted-process.ts";
import type { AgentCgroup } from "../platform/cgroups.ts";
import { commandLineMatches, isProcessAlive, startTimeTicksToMs } from "../platform/proc-info.ts";
import { type ProcessTree, processTree } from "../platform/process-tree.ts";
import { terminateTree } from "../platform/terminate-group.ts";
import type { ProvenProcess } from "./agent-ownership.ts";
import type { AgentRegistry, PersistedAgent } from "./agent-registry.ts";
import type { AgentRunner } from "./agent-runner.ts";
import type { DaemonState } from "./daemon-state.ts";

/** What a restore did, by agent name. */
export type RestoreResult = {
  readonly adopted: string[];
  /** Deployed agents started again (their process was gone, or could not be kept). */
  readonly restarted: string[];
  /** Agents whose leftover processes were stopped. */
  readonly stopped: string[];
};

/** The recorded argv, when the record holds one. */
function recordedCommand(saved: PersistedAgent | undefined): readonly string[] | undefined {
  const command: unknown = saved?.command;
  return Array.isArray(command) && command.length > 0 && command.every((a) => typeof a === "string")
    ? (command as string[])
    : undefined;
}

/** `value` when it is a port number (1..65535) or its decimal text; undefined otherwise. */
function validPort(value: unknown): number | undefined {
  const port = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
  return typeof port === "number" && Number.isInteger(port) && port >= 1 && port <= 65535
    ? port
    : undefined;
}

/** The tree of an adopted leader: its cgroup when it is in one of the agent's, else /proc. */
function adoptedTree(state: DaemonState, name: string, pid: number): ProcessTree {
  const cgroup = state.cgroups?.cgroupOf(pid);
  if (cgroup?.agent === name) return processTree({ group: pid, cgroup });
  return processTree({ group: pid, marker: state.ownership.markerOf(name) });
}

/** True when `found` belongs to the adopted `tree` (led by `leader`) rather than being a stray. */
function inTree(
  tree: ProcessTree,
  leader: ProvenProcess,
  found: ProvenProcess,
  command: readonly string[] | undefined,
): boolean {
  if (found.stat.pgrp === leader.stat.pid) return true;
  if (tree.cgroup !== undefined) return tree.cgroup.pids().includes(found.stat.pid);
  // Without a cgroup every process with the token is a member, except a second copy of the
  // agent (a group leader running the recorded command), which must not run twice.
  const copy =
    found.stat.pgrp === found.stat.pid &&
    command !== undefined &&
    commandLineMatches(command, found.commandLine);
  return !copy;
}

/**
 * Restores the previous run: adopts every deployed agent whose recorded process is still the
 * same process and proven ours (or, when the previous daemon died before recording a new spawn,
 * the newest proven process running the recorded command); stops everything else proven ours
 * (a second copy, what a dead agent left behind, the processes of an agent recorded as stopped)
 * and what is left in the agents' cgroups; reports, and leaves alone, processes that claim to
 * be ours without proof; and starts again the deployed agents that could not be adopted, once
 * what they left is gone (so the old port is free again and no orphan stays). Never throws on
 * odd data in the file.
 */
export async function restoreState(
  state: DaemonState,
  registry: AgentRegistry,
  logger: Logger,
  lifetime: AbortSignal,
): Promise<RestoreResult> {
  if (state.revision !== undefined) registry.events.advancePast(state.revision);
  const recorded = state.recorded;
  const cgroupsByAgent = new Map<string, AgentCgroup[]>();
  for (const cgroup of state.cgroups?.list() ?? []) {
    cgroupsByAgent.set(cgroup.agent, [...(cgroupsByAgent.get(cgroup.agent) ?? []), cgroup]);
  }
  const registered = registry.list().map((s) => s.name);
  const names = new Set([...Object.keys(recorded), ...registered, ...cgroupsByAgent.keys()]);
  const survey = state.ownership.survey(names);
  for (const claim of survey.unproven) {
    logger.warn(
      "a process claims to be an agent of this state dir but is not proven ours; leaving it alone",
      {
        pid: claim.pid,
        uid: claim.uid,
        agent: claim.agent,
        why: claim.why,
      },
    );
  }
  for (const name of survey.proven.keys()) names.add(name);

  const result: RestoreResult = { adopted: [], restarted: [], stopped: [] };
  const reaps: Promise<unknown>[] = [];
  /** Stops what is left of agent `name`: proven processes by pid, and its cgroups. */
  const stopLeftovers = (
    name: string,
    processes: readonly ProvenProcess[],
    cgroups: readonly AgentCgroup[],
    stopTimeoutMs: number,
    why: string,
  ): void => {
    const populated = cgroups.filter((c) => c.populated());
    for (const cgroup of cgroups) if (!populated.includes(cgroup)) cgroup.remove();
    if (processes.length === 0 && populated.length === 0) return;
    logger.warn(why, {
      agent: name,
      pids: [
        ...new Set([...processes.map((p) => p.stat.pid), ...populated.flatMap((c) => c.pids())]),
      ],
    });
    result.stopped.push(name);
    const trees = [
      processTree({
        processes: processes.map((p) => ({
          pid: p.stat.pid,
          startTimeTicks: p.stat.startTimeTicks,
        })),
      }),
      ...populated.map((cgroup) => processTree({ cgroup })),
    ];
    for (const tree of trees) {
      reaps.push(
        terminateTree(tree, { stopTimeoutMs })
          .then(() => tree.release())
          .catch((error: unknown) =>
            logger.error("cannot stop an agent's leftover processes", { agent: name, error }),
          ),
      );
    }
  };

  for (const name of names) {
    const saved = recorded[name];
    const proven = survey.proven.get(name) ?? [];
    const cgroups = cgroupsByAgent.get(name) ?? [];
    const runner = registry.has(name) ? registry.runner(name) : undefined;
    if (runner === undefined) {
      if (proven.length > 0 || cgroups.some((c) => c.populated())) {
        logger.warn("a recorded agent is still running but its definition is gone; leaving it", {
          agent: name,
          pids: proven.map((p) => p.stat.pid),
        });
      }
      continue;
    }
    const stopTimeoutMs =
      runner.definition?.deployment.stopTimeoutMs ?? DEFINITION_DEFAULTS.stopTimeoutMs;
    const wanted = saved?.desired === "running";
    const command = recordedCommand(saved);
    const savedPid = typeof saved?.pid === "number" && saved.pid > 0 ? saved.pid : undefined;
    const atRecordedPid = proven.find((p) => p.stat.pid === savedPid);
    if (savedPid !== undefined && atRecordedPid === undefined && isProcessAlive(savedPid)) {
      logger.warn("the recorded process of an agent is not proven ours; leaving it alone", {
        agent: name,
        pid: savedPid,
      });
    }
    const sameAsRecorded =
      atRecordedPid !== undefined &&
      atRecordedPid.stat.startTimeTicks === saved?.startTimeTicks &&
      command !== undefined &&
      commandLineMatches(command, atRecordedPid.commandLine);
    let leader: ProvenProcess | undefined;
    if (wanted && sameAsRecorded) leader = atRecordedPid;
    else if (wanted && command !== undefined) {
      // Spawned but not recorded yet (the daemon died in between): the newest group leader that
      // runs the recorded command.
      leader = proven
        .filter((p) => p.stat.pid === p.stat.pgrp && commandLineMatches(command, p.commandLine))
        .sort((a, b) => b.stat.startTimeTicks - a.stat.startTimeTicks)[0];
      if (leader !== undefined) {
        logger.warn("adopting an agent process the previous daemon had not recorded", {
          agent: name,
          pid: leader.stat.pid,
        });
      }
    }
    if (leader === undefined) {
      stopLeftovers(
        name,
        proven,
        cgroups,
        stopTimeoutMs,
        wanted
          ? "stopping the processes a dead agent left behind"
          : "stopping the processes of an agent recorded as stopped; it stays stopped",
      );
      if (wanted) result.restarted.push(name);
      continue;
    }
    const tree = adoptedTree(state, name, leader.stat.pid);
    const strays = proven.filter((p) => p !== leader && !inTree(tree, leader, p, command));
    const otherCgroups = cgroups.filter((c) => c.dir !== tree.cgroup?.dir);
    stopLeftovers(
      name,
      strays,
      otherCgroups,
      stopTimeoutMs,
      "stopping a second process of an agent",
    );
    if (tryAdopt(runner, leader, tree, saved, lifetime, logger)) {
      result.adopted.push(name);
      continue;
    }
    reaps.push(
      terminateTree(tree, { stopTimeoutMs })
        .then(() => tree.release())
        .catch((error: unknown) =>
          logger.error("cannot stop an agent process", { agent: name, error }),
        ),
    );
    result.restarted.push(name);
  }
  // Restarted on their old ports once every leftover and duplicate is gone.
  await Promise.all(reaps);
  state.cgroups?.sweep();
  for (const name of result.restarted) registry.runner(name).autostart();
  return result;
}

/**
 * Adopts `leader` on the port its environment names (what it was really given), else the
 * recorded one. False (and logged) when the port is unknown or another agent holds it: the
 * caller stops the process, and the agent is started again. Never throws.
 */
function tryAdopt(
  runner: AgentRunner,
  leader: ProvenProcess,
  tree: ProcessTree,
  saved: PersistedAgent | undefined,
  lifetime: AbortSignal,
  logger: Logger,
): boolean {
  const pid = leader.stat.pid;
  const port = validPort(leader.env.get("ATOLL_AGENT_PORT")) ?? validPort(saved?.port);
  if (port === undefined) {
    logger.warn("stopping an agent process whose port is not known", { agent: runner.name, pid });
    return false;
  }
  const recorded = saved?.pid === pid && typeof saved.startTimeMs === "number";
  try {
    runner.adopt(
      {
        ...adoptProcess(pid, leader.stat.startTimeTicks, { signal: lifetime }),
        tree,
        commandLine: recordedCommand(saved) ?? leader.commandLine,
      },
      port,
      recorded ? saved.startTimeMs : startTimeTicksToMs(leader.stat.startTimeTicks),
    );
    return true;
  } catch (error) {
    logger.warn("stopping an agent process that cannot be adopted on its port", {
      agent: runner.name,
      pid,
      port,
      error: String(error),
    });
    return false;
  }
}
