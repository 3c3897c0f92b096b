/**
 * The one interface every supervisor under test implements, so each scenario runs the same
 * steps on each tool. Health is always judged by the harness itself (GET /status on the agent's
 * port, bench/lib/status-probe.ts), never by what the tool claims.
 */
import type { AgentSpec } from "../lib/fixture.ts";
import { waitAllHealthy } from "../lib/status-probe.ts";
import { nowMs } from "../lib/timing.ts";

export type ToolName = "floor" | "atoll" | "pm2" | "supervisord";

export const TOOL_NAMES: readonly ToolName[] = ["floor", "atoll", "pm2", "supervisord"];

/** A named status call of a tool's API (one timed request/response). */
export interface StatusCall {
  /** What the call is, as shown in the report (`ListAgents`, `pm2.list()`, ...). */
  readonly label: string;
  readonly run: () => Promise<unknown>;
}

/** State of one agent as the tool reports it, for crash-loop and soak reports. */
export interface ReportedState {
  readonly state: string;
  readonly pid: number;
  /** Restarts the tool counts itself, when it reports one. */
  readonly restarts?: number;
}

export interface Tool {
  readonly name: ToolName;
  /** Why the tool cannot run here (missing binary...), or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** Version string for the report. */
  version(): Promise<string>;
  /** The tool's configuration in words, for the report. */
  describeConfig(): string;
  /** Writes the tool's config for `agents` and starts its daemon (no agent running yet). */
  setup(agents: readonly AgentSpec[]): Promise<void>;
  /** Asks the tool to start `names` (all agents when omitted); resolves when the tool's call returns. */
  startAll(names?: readonly string[]): Promise<void>;
  /**
   * Waits, by polling each agent's /status from the harness, until all `names` (all agents when
   * omitted) answer 200; default timeout 120 s; `signal` ends the wait early.
   */
  waitAllHealthy(
    names?: readonly string[],
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<void>;
  /** Pid of the agent's process as the tool reports it (0 when none). */
  pid(name: string): Promise<number>;
  /** kill -9 of the agent's pid as the tool reports it; returns that pid and when it was sent. */
  crash(name: string): Promise<Crash>;
  /** Asks the tool to stop every agent; resolves when the tool's call returns. */
  stopAll(): Promise<void>;
  /** One API call listing every agent's status. */
  readonly listCall: StatusCall;
  /** One API call for one agent's status. */
  oneCall(name: string): StatusCall;
  /** Agent state as the tool reports it. */
  reportedState(name: string): Promise<ReportedState>;
  /** Pid of the daemon (undefined for the floor, which has none). */
  daemonPid(): number | undefined;
  /** Other long-lived processes of the tool that work for it (atoll's output keeper). */
  helperPids?(): number[];
  /** The files of an agent's output as they are now (the log and its rotated files). */
  agentLogFiles?(name: string): string[];
  /** Stops every agent and the daemon, removes temp files. Safe to call twice. */
  teardown(): Promise<void>;
}

/** The harness's identical health wait, for tools to delegate to. */
export async function waitHealthyByPort(
  agents: readonly AgentSpec[],
  names: readonly string[] | undefined,
  timeoutMs = 120_000,
  signal?: AbortSignal,
): Promise<void> {
  const chosen = names === undefined ? agents : agents.filter((a) => names.includes(a.name));
  await waitAllHealthy(
    chosen.map((a) => a.port),
    { timeoutMs, ...(signal !== undefined && { signal }) },
  );
}

/** The agent named `name` in `agents`, or an error. */
export function agentNamed(agents: readonly AgentSpec[], name: string): AgentSpec {
  const agent = agents.find((a) => a.name === name);
  if (agent === undefined) throw new Error(`unknown agent ${name}`);
  return agent;
}

/** A kill -9 the harness sent: the pid and the time (`nowMs`) just before the signal. */
export interface Crash {
  readonly pid: number;
  readonly atMs: number;
}

/** kill -9 of `pid`; throws when there is no such pid. */
export function killPid(pid: number): Crash {
  if (!(pid > 0)) throw new Error(`no pid to kill (${pid})`);
  const atMs = nowMs();
  process.kill(pid, "SIGKILL");
  return { pid, atMs };
}
