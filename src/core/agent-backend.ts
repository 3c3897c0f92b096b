/**
 * The one interface the API layers (gRPC in `rpc/`, Connect and the dashboard in `http/`) serve:
 * what a backend that runs agents must do. The local supervisor (`AgentRegistry`) implements it
 * on this host; a Kubernetes backend implements it on a cluster. Nothing above this interface
 * knows which backend it talks to (DESIGN.md, "Backends, not branches").
 *
 * Every method that names an agent throws `DeployError` `INVALID_AGENT_NAME` for a malformed name
 * and `AGENT_NOT_FOUND` for an unknown one; the operations throw the codes of SPEC §6.
 */
import type { AgentChange, AgentStatus } from "./agent-status.ts";

/** Called synchronously for every change; must not block (watchers buffer on their own). */
export type AgentChangeListener = (change: AgentChange) => void;

/** The revisioned stream of agent changes that `WatchHealth` reads. */
export interface ChangeFeed {
  /** Latest revision published. */
  readonly revision: number;
  /**
   * The changes after `revision`, oldest first, or undefined when they are no longer all known
   * (the caller then sends a fresh snapshot).
   */
  since(revision: number): AgentChange[] | undefined;
  /** Calls `listener` for every change from now on; returns the unsubscribe function. */
  subscribe(listener: AgentChangeListener): () => void;
}

/** Options of {@link AgentBackend.streamLogs}. */
export interface LogStreamOptions {
  /** How many of the last complete lines to send first (0: none). */
  readonly tailLines: number;
  /** After the tail, keep sending new lines as they are written. */
  readonly follow: boolean;
  /** Ends the stream (without an error) when aborted. */
  readonly signal: AbortSignal;
}

export interface AgentBackend {
  /** Starts the agent and resolves once it is RUNNING and healthy; idempotent. */
  deploy(name: string): Promise<AgentStatus>;
  /** Stops the agent gracefully and resolves once it is STOPPED; idempotent. */
  undeploy(name: string): Promise<AgentStatus>;
  /** Stops the agent if it runs, starts it again, and waits like `deploy`. */
  restart(name: string): Promise<AgentStatus>;
  /** The agent's full status now. */
  status(name: string): AgentStatus;
  /** Every known agent, sorted by name. */
  list(): AgentStatus[];
  /** Every change of any agent's state or health, with revisions. */
  readonly events: ChangeFeed;
  /**
   * The agent's output as batches of lines: first the tail, then (with `follow`) new lines until
   * `signal` aborts or the agent is no longer known. Lines carry no newline.
   */
  streamLogs(name: string, options: LogStreamOptions): AsyncIterable<readonly string[]>;
}
