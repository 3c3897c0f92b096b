/**
 * The two kinds of part a `DeploymentServer` is composed of (docs/embedding.md, "Composition"):
 * one backend that runs the agents, and listeners that serve it. Each part is built by its own
 * module from explicit options; `deployment-server.ts` starts them in order and closes them in
 * reverse. Nothing else knows which backend or which listeners a server has.
 */
import type { AgentBackend } from "../core/agent-backend.ts";

/**
 * A backend part could not be opened for a reason other than its configuration (the output
 * keeper does not start, the cluster does not answer): the server's start fails with
 * SERVER_START_FAILED.
 */
export class BackendStartFailed extends Error {
  override readonly name = "BackendStartFailed";
}

/** Agents run somewhere (this host's processes; a cluster), and what the server does with them. */
export interface BackendPart {
  /** What the listeners and the library methods serve. */
  readonly backend: AgentBackend;
  /** Reads the agent definitions again now and applies them (not waiting for the watcher). */
  rescan(): Promise<void>;
  /**
   * Called once, after every listener is up: restores the previous run (adopting live agents),
   * starts the agents that should run, and starts the background work (directory watch, logs).
   */
  run(): Promise<void>;
  /**
   * Called once, after the listeners began draining. `stop`: stops every agent in parallel, each
   * with its grace; `detach`: leaves them running for the next server to adopt. Then saves the
   * state and ends the background work. `killed` is true when an agent had to be killed.
   * Aborting `force` kills the agents still stopping at once.
   */
  close(mode: "stop" | "detach", force: AbortSignal): Promise<{ readonly killed: boolean }>;
  /**
   * Instead of `run` and `close` when the start failed before `run`: releases what opening took
   * and leaves the agents and the state file untouched (another server may own them).
   */
  abandon(): Promise<void>;
}

/** A network listener serving the backend (gRPC; the HTTP listener of SPEC §9 is another). */
export interface ListenerPart {
  /** For logs: `grpc`, `http`. */
  readonly kind: string;
  /** The bound address (`127.0.0.1:50051` with the real port, `unix:/path`). */
  readonly address: string;
  /** First step of a shutdown: reports NOT_SERVING, ends open streams, refuses new calls. */
  beginDrain(): void;
  /** Waits up to `graceMs` for calls in flight, then closes every connection. */
  close(graceMs: number): Promise<void>;
}
