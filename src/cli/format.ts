/**
 * Output formatting of the client commands: pure functions from protobuf-es messages to the
 * strings the CLI prints (SPEC §7). Nothing here writes anywhere; callers write the result to
 * the streams they were given. `docs/cli.md` documents every shape.
 */
import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  type Agent,
  AgentState,
  AgentStateSchema,
  type ExitInfo,
  HealthStatus,
  HealthStatusSchema,
} from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  WatchEventType,
  type WatchHealthResponse,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { PLAIN_STYLE, type Style } from "./style.ts";

/** `AGENT_STATE_RUNNING` → `RUNNING`; an unknown number → `STATE_<n>`. */
export function stateName(state: number): string {
  return AgentStateSchema.values.find((v) => v.number === state)?.localName ?? `STATE_${state}`;
}

/** `HEALTH_STATUS_HEALTHY` → `HEALTHY`; an unknown number → `HEALTH_<n>`. */
export function healthName(health: number): string {
  return (
    HealthStatusSchema.values.find((v) => v.number === health)?.localName ?? `HEALTH_${health}`
  );
}

/** The state name coloured by how good it is: green running, yellow in transit, red failed. */
export function paintState(state: number, style: Style, text = stateName(state)): string {
  switch (state) {
    case AgentState.RUNNING:
      return style.green(text);
    case AgentState.STARTING:
    case AgentState.STOPPING:
    case AgentState.BACKOFF:
      return style.yellow(text);
    case AgentState.FAILED:
    case AgentState.INVALID:
      return style.red(text);
    default:
      return style.dim(text);
  }
}

/** The health name coloured: green healthy, red unhealthy, dim unknown. */
export function paintHealth(health: number, style: Style, text = healthName(health)): string {
  switch (health) {
    case HealthStatus.HEALTHY:
      return style.green(text);
    case HealthStatus.UNHEALTHY:
      return style.red(text);
    default:
      return style.dim(text);
  }
}

/** A timestamp as ISO 8601 UTC with second precision (`2025-06-01T12:00:05Z`). */
export function formatTimestamp(ts: Timestamp): string {
  return `${new Date(timestampMs(ts)).toISOString().slice(0, 19)}Z`;
}

/** A duration in milliseconds, coarsely: `45s`, `3m20s`, `2h5m`, `3d4h`. */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${pad2(seconds % 60)}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${pad2(minutes % 60)}m`;
  return `${Math.floor(hours / 24)}d${hours % 24}h`;
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

/** `2025-06-01T12:00:05Z (3m20s ago)`, `... (in 4s)`, or `-` when unset. */
export function formatTimeWithAge(ts: Timestamp | undefined, nowMs: number): string {
  if (ts === undefined) return "-";
  const delta = timestampMs(ts) - nowMs;
  const relative = delta > 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
  return `${formatTimestamp(ts)} (${relative})`;
}

/** `state_reason: state_message`, either alone when the other is empty, or "" when both are. */
export function formatReason(agent: Pick<Agent, "stateReason" | "stateMessage">): string {
  const { stateReason, stateMessage } = agent;
  if (stateReason !== "" && stateMessage !== "") return `${stateReason}: ${stateMessage}`;
  return stateReason !== "" ? stateReason : stateMessage;
}

/** `exit code 1 at <time>` / `signal SIGKILL at <time>`. */
export function formatExit(exit: ExitInfo): string {
  const how =
    exit.code !== undefined
      ? `exit code ${exit.code}`
      : exit.signal !== ""
        ? `signal ${exit.signal}`
        : "exited";
  return exit.time === undefined ? how : `${how} at ${formatTimestamp(exit.time)}`;
}

/** Bytes in binary units: `512 B`, `1.5 KiB`, `200.0 MiB`. */
export function formatBytes(bytes: bigint | number): string {
  let value = Number(bytes);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A port or pid; `-` for 0 (none). */
export function numberOrDash(value: number): string {
  return value === 0 ? "-" : String(value);
}

/** Width of the status block's label column ("Next retry: " is the longest). */
const LABEL_WIDTH = 12;

function row(label: string, value: string): string {
  return `${`${label}:`.padEnd(LABEL_WIDTH)}${value}`;
}

export interface FormatOptions {
  /** Colours; none by default. */
  readonly style?: Style;
}

export interface AgentTableOptions extends FormatOptions {
  /**
   * `list --all-contexts`: the context of each agent (same order and length as the agents),
   * shown in a first column `Context`.
   */
  readonly contexts?: readonly string[];
}

export interface WatchLineOptions extends FormatOptions {
  /** `watch --all-contexts`: the context of the event, printed after the time. */
  readonly context?: string;
}

/**
 * The `status` block: `Agent`, `Status`, `Port`, `PID`, `Started`, `Health`, `Restarts`,
 * `Config`; `Reason` (`state_reason: state_message`) when the agent is not RUNNING;
 * `Next retry` in BACKOFF; then optional details (`Version`, `Package` for an installed
 * package, `Memory`, `Last exit`, `Log`, `Instance` and `Host` (a pod and its node), `Warning`,
 * `Note`) when the server knows them. Ends with a newline.
 */
export function formatStatus(agent: Agent, nowMs: number, options: FormatOptions = {}): string {
  const style = options.style ?? PLAIN_STYLE;
  const health =
    agent.health === HealthStatus.UNHEALTHY && agent.healthMessage !== ""
      ? `${healthName(agent.health)} (${agent.healthMessage})`
      : healthName(agent.health);
  const lines = [
    row("Agent", style.bold(agent.name)),
    row("Status", paintState(agent.state, style)),
    row("Port", numberOrDash(agent.port)),
    row("PID", numberOrDash(agent.pid)),
    row("Started", formatTimeWithAge(agent.startTime, nowMs)),
    row("Health", paintHealth(agent.health, style, health)),
    row("Restarts", String(agent.restartCount)),
    row("Config", agent.configPath === "" ? "-" : agent.configPath),
  ];
  if (agent.state !== AgentState.RUNNING) {
    const reason = formatReason(agent);
    lines.push(row("Reason", reason === "" ? "-" : reason));
  }
  if (agent.state === AgentState.BACKOFF) {
    lines.push(row("Next retry", formatTimeWithAge(agent.nextRestartTime, nowMs)));
  }
  if (agent.version !== "") lines.push(row("Version", agent.version));
  const installed = agent.installedPackage;
  if (installed !== undefined) {
    const when =
      installed.installTime === undefined ? "" : ` ${formatTimestamp(installed.installTime)}`;
    lines.push(row("Package", `installed${when}, sha256 ${installed.sha256}`));
  }
  if (agent.memoryBytes > 0n) lines.push(row("Memory", formatBytes(agent.memoryBytes)));
  if (agent.lastExit !== undefined) lines.push(row("Last exit", formatExit(agent.lastExit)));
  if (agent.logPath !== "") lines.push(row("Log", agent.logPath));
  // Kubernetes backend: the pod and the node it runs on.
  if (agent.instance !== "") {
    lines.push(row("Instance", agent.instance));
    if (agent.host !== "") lines.push(row("Host", agent.host));
  }
  for (const warning of agent.warnings) lines.push(row("Warning", style.yellow(warning)));
  if (agent.definitionRemoved) {
    lines.push(row("Note", "definition removed from the agents directory; undeploy to forget it"));
  }
  return `${lines.join("\n")}\n`;
}

/** The columns of `list`, in order. */
export const LIST_COLUMNS = ["Agent Name", "Status", "Port", "PID", "Health", "Restarts"] as const;

/**
 * The `list` table: a header row with LIST_COLUMNS (after `Context` when `options.contexts`
 * is given), then one row per agent in the given order;
 * columns left-aligned and separated by at least two spaces; `-` for a zero port or pid.
 * Ends with a newline.
 */
export function formatAgentTable(
  agents: readonly Agent[],
  options: AgentTableOptions = {},
): string {
  const style = options.style ?? PLAIN_STYLE;
  const contexts = options.contexts;
  type Cell = { readonly text: string; readonly paint: (text: string) => string };
  const plain = (text: string): Cell => ({ text, paint: (t) => t });
  const columns = contexts === undefined ? [...LIST_COLUMNS] : ["Context", ...LIST_COLUMNS];
  const header: Cell[] = columns.map((title) => ({ text: title, paint: style.bold }));
  const rows: Cell[][] = agents.map((agent, index) => [
    ...(contexts === undefined ? [] : [plain(contexts[index] ?? "")]),
    plain(agent.name),
    { text: stateName(agent.state), paint: (t) => paintState(agent.state, style, t) },
    plain(numberOrDash(agent.port)),
    plain(numberOrDash(agent.pid)),
    { text: healthName(agent.health), paint: (t) => paintHealth(agent.health, style, t) },
    plain(String(agent.restartCount)),
  ]);
  const all = [header, ...rows];
  const widths = columns.map((_, i) => Math.max(...all.map((r) => r[i]?.text.length ?? 0)));
  const render = (cells: Cell[]): string =>
    cells
      .map((cell, i) => {
        const last = i === cells.length - 1;
        const padded = last ? cell.text : cell.text.padEnd(widths[i] ?? 0);
        // Paint only the text, not the padding, so underline/background styles stay tight.
        return cell.paint(padded.slice(0, cell.text.length)) + padded.slice(cell.text.length);
      })
      .join("  ");
  return `${all.map(render).join("\n")}\n`;
}

/**
 * One `watch` line for an event that carries an agent (SNAPSHOT, CHANGE, REMOVED):
 * `<time> <name> <STATE>/<HEALTH>[ <reason>]`, the time being the event's (ISO 8601 UTC), with
 * `<time> <context> <name> ...` when `options.context` is given;
 * REMOVED events print `<time> <name> REMOVED`. Undefined for events that print nothing
 * (SNAPSHOT_COMPLETE, HEARTBEAT). No trailing newline.
 */
export function formatWatchEvent(
  event: WatchHealthResponse,
  nowMs: number,
  options: WatchLineOptions = {},
): string | undefined {
  const style = options.style ?? PLAIN_STYLE;
  const agent = event.agent;
  if (agent === undefined) return undefined;
  const stamp = style.dim(formatTimestamp(event.time ?? timestampFromMs(nowMs)));
  const time = options.context === undefined ? stamp : `${stamp} ${options.context}`;
  switch (event.type) {
    case WatchEventType.SNAPSHOT:
    case WatchEventType.CHANGE: {
      const reason = formatReason(agent);
      const state = `${paintState(agent.state, style)}/${paintHealth(agent.health, style)}`;
      return reason === ""
        ? `${time} ${agent.name} ${state}`
        : `${time} ${agent.name} ${state} ${reason}`;
    }
    case WatchEventType.REMOVED:
      return `${time} ${agent.name} ${style.dim("REMOVED")}`;
    default:
      return undefined;
  }
}

/** `✓ Agent <name> deployed on port <port>` */
export function deployedLine(agent: Agent, style: Style = PLAIN_STYLE): string {
  return `${style.green("✓")} Agent ${agent.name} deployed on port ${agent.port}`;
}

/** `✓ Agent <name> stopped` */
export function stoppedLine(agent: Agent, style: Style = PLAIN_STYLE): string {
  return `${style.green("✓")} Agent ${agent.name} stopped`;
}

/** `✓ Agent <name> restarted on port <port>` */
export function restartedLine(agent: Agent, style: Style = PLAIN_STYLE): string {
  return `${style.green("✓")} Agent ${agent.name} restarted on port ${agent.port}`;
}

/**
 * The success line of `install`: `✓ Agent <name> installed (sha256 <12 hex>…)`, `replaced`
 * or `already installed` by the outcome, with ` and deployed on port <port>` when it runs.
 */
export function installedLine(
  agent: Agent,
  outcome: "installed" | "replaced" | "already installed",
  style: Style = PLAIN_STYLE,
): string {
  const sha = agent.installedPackage?.sha256 ?? "";
  const checksum = sha === "" ? "" : ` (sha256 ${sha.slice(0, 12)}…)`;
  const running = agent.state === AgentState.RUNNING ? ` and deployed on port ${agent.port}` : "";
  return `${style.green("✓")} Agent ${agent.name} ${outcome}${checksum}${running}`;
}

/** `✓ Agent <name> removed` */
export function removedLine(agent: Agent, style: Style = PLAIN_STYLE): string {
  return `${style.green("✓")} Agent ${agent.name} removed`;
}

/** `✗ Agent <name>: <cause>`, or `✗ <cause>` when no agent is concerned. */
export function failureLine(agent: string | undefined, cause: string, style = PLAIN_STYLE): string {
  const mark = style.red("✗");
  return agent === undefined ? `${mark} ${cause}` : `${mark} Agent ${agent}: ${cause}`;
}

/** `! Agent <name>: <note>`: the operation succeeded but something deserves a look. */
export function noticeLine(agent: string, note: string, style = PLAIN_STYLE): string {
  return `${style.yellow("!")} Agent ${agent}: ${note}`;
}

/**
 * The proto JSON form of a message (lowerCamelCase field names, enum value names, 64-bit
 * integers as strings, timestamps RFC 3339), with every scalar field present even when it has
 * its default value (so `"port": 0` is there); unset message fields are left out.
 */
export function messageJson<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): unknown {
  return toJson(schema, message, { alwaysEmitImplicit: true });
}

/** A JSON document for a single response, indented by two spaces; ends with a newline. */
export function jsonDocument(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** A JSON value on one line, for streams (watch, logs); ends with a newline. */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}
