/**
 * How the dashboard writes an agent's fields: pure functions of the generated `Agent` message
 * and the current time, shared by the table and its tests.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Agent, AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";

/** SPEC §9's lower-case short state names, also the CSS class suffix of each state's colour. */
export function stateName(state: AgentState): string {
  switch (state) {
    case AgentState.DISCOVERED:
      return "discovered";
    case AgentState.STARTING:
      return "starting";
    case AgentState.RUNNING:
      return "running";
    case AgentState.BACKOFF:
      return "backoff";
    case AgentState.STOPPING:
      return "stopping";
    case AgentState.STOPPED:
      return "stopped";
    case AgentState.FAILED:
      return "failed";
    case AgentState.INVALID:
      return "invalid";
    default:
      return "unknown";
  }
}

export function healthName(health: HealthStatus): string {
  switch (health) {
    case HealthStatus.HEALTHY:
      return "healthy";
    case HealthStatus.UNHEALTHY:
      return "unhealthy";
    default:
      return "unknown";
  }
}

/** States with a process (or one about to be): Undeploy applies, uptime counts. */
export function isLive(state: AgentState): boolean {
  return (
    state === AgentState.STARTING ||
    state === AgentState.RUNNING ||
    state === AgentState.BACKOFF ||
    state === AgentState.STOPPING
  );
}

/** Milliseconds since the epoch of a Timestamp. */
export function timestampMs(time: Timestamp): number {
  return Number(time.seconds) * 1000 + Math.floor(time.nanos / 1_000_000);
}

/** `42s`, `5m 03s`, `3h 07m`, `2d 4h`; "—" when not running. */
export function formatUptime(agent: Agent, nowMs: number): string {
  if (agent.pid === 0 || agent.startTime === undefined) return "—";
  const total = Math.max(0, Math.floor((nowMs - timestampMs(agent.startTime)) / 1000));
  const days = Math.floor(total / 86_400);
  const hours = Math.floor((total % 86_400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const two = (n: number): string => String(n).padStart(2, "0");
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${two(minutes)}m`;
  if (minutes > 0) return `${minutes}m ${two(seconds)}s`;
  return `${seconds}s`;
}

/** `512 B`, `12.3 MiB`; "—" when not measured. */
export function formatBytes(bytes: bigint | number): string {
  const value = Number(bytes);
  if (value <= 0) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${scaled.toFixed(scaled < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A port or pid, or "—" for 0 (none). */
export function formatNumber(value: number): string {
  return value === 0 ? "—" : String(value);
}

/** `1 / 3`: automatic restarts in the current budget, of those allowed. */
export function formatRestarts(agent: Agent): string {
  return `${agent.restartCount} / ${agent.maxRestarts}`;
}

/**
 * What the Reason column says: for an agent that is not running, its reason and message (the
 * validation message of an INVALID one); for an unhealthy one, the last probe; else nothing.
 */
export function describeReason(agent: Agent): string {
  const parts: string[] = [];
  if (agent.state !== AgentState.RUNNING) {
    if (agent.stateReason !== "") parts.push(agent.stateReason);
    if (agent.stateMessage !== "") parts.push(agent.stateMessage);
  } else if (agent.health === HealthStatus.UNHEALTHY && agent.healthMessage !== "") {
    parts.push(`probe: ${agent.healthMessage}`);
  }
  if (agent.definitionRemoved) parts.push("definition removed; keeps running until undeployed");
  return parts.join(": ");
}

/** "3 running · 1 failed": counts per state in lifecycle order, zero counts left out. */
export function summarize(agents: Iterable<Agent>): string {
  const counts = new Map<string, number>();
  let total = 0;
  for (const agent of agents) {
    const name = stateName(agent.state);
    counts.set(name, (counts.get(name) ?? 0) + 1);
    total += 1;
  }
  if (total === 0) return "no agents";
  const order = [
    "running",
    "starting",
    "backoff",
    "stopping",
    "failed",
    "invalid",
    "stopped",
    "discovered",
    "unknown",
  ];
  const parts = order.filter((s) => counts.has(s)).map((s) => `${counts.get(s)} ${s}`);
  return `${total} agent${total === 1 ? "" : "s"}: ${parts.join(" · ")}`;
}
