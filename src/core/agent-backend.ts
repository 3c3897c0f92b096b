/**
 * The one interface the API layers (gRPC in `rpc/`, Connect and the dashboard in `http/`) serve:
 * what a backend that runs agents must do. The local supervisor (`AgentRegistry`) implements it
 * on this host; a Kubernetes backend implements it on a cluster. Nothing above this interface
 * knows which backend it talks to (DESIGN.md, "Backends, not branches").
 *
 * Every method that names an agent throws `DeployError` `INVALID_AGENT_NAME` for a malformed name
 * and `AGENT_NOT_FOUND` for an unknown one; the operations throw the codes of SPEC §6.
 *
 * Installing agent packages (SPEC §12) is a separate, optional capability (`packages`): the local
 * backend has it (`src/packages/`), a backend without it answers InstallAgent and RemoveAgent
 * with NOT_SUPPORTED.
 */
import type { AgentChange, AgentStatus, PackageFormat } from "./agent-status.ts";

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
  /** Installs and removes agent packages; undefined when this backend cannot. */
  readonly packages?: PackageInstaller | undefined;
}

/** What the header of an InstallAgent call says about the archive that follows. */
export interface PackageUploadHeader {
  /** SHA-256 of the whole archive, 64 lower-case hex digits. */
  readonly sha256: string;
  /** Replace an agent installed from another archive. */
  readonly force: boolean;
  /** Start (or restart, when its package was replaced) the agent once installed. */
  readonly start: boolean;
  /** Undefined: told by the archive's first bytes. */
  readonly format: PackageFormat | undefined;
  /** Size of the archive in bytes; undefined when the client did not say. */
  readonly sizeBytes: number | undefined;
}

/** What an install did. */
export type InstallOutcome = "INSTALLED" | "REPLACED" | "ALREADY_INSTALLED";

export interface InstallResult {
  readonly outcome: InstallOutcome;
  /** The agent after the install (and the start, when asked for). */
  readonly status: AgentStatus;
}

/**
 * Installs and removes agent packages (SPEC §12). Throws `DeployError`: PACKAGE_INVALID,
 * PROVISIONING_FAILED, PACKAGE_EXISTS, AGENT_NAME_TAKEN, AGENT_NOT_INSTALLED,
 * INSTALL_IN_PROGRESS, TOO_MANY_INSTALLS, and the codes of Deploy/Undeploy for `start` and
 * removal.
 */
export interface PackageInstaller {
  /** Largest archive accepted, in bytes (server key `max_package_bytes`). */
  readonly maxPackageBytes: number;
  /**
   * Receives the archive (`chunks`, in order), checks it, unpacks, provisions and installs it.
   * When `chunks` throws (the upload was cut) or `signal` aborts, nothing is installed and
   * everything written so far is removed.
   */
  install(
    header: PackageUploadHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<InstallResult>;
  /** Stops the installed agent gracefully and deletes its package; its last status. */
  remove(name: string): Promise<AgentStatus>;
}

/** An `AgentBackend` with the package capability, as the API layers see it. */
export interface AgentBackendWithPackages extends AgentBackend {
  readonly packages: PackageInstaller;
}

/**
 * `backend` with `packages` added: the composition root's glue for a backend class that does
 * not own its installer (the local supervisor). Every other member delegates to `backend`.
 */
export function withPackages(
  backend: AgentBackend,
  packages: PackageInstaller,
): AgentBackendWithPackages {
  return {
    deploy: (name) => backend.deploy(name),
    undeploy: (name) => backend.undeploy(name),
    restart: (name) => backend.restart(name),
    status: (name) => backend.status(name),
    list: () => backend.list(),
    get events() {
      return backend.events;
    },
    streamLogs: (name, options) => backend.streamLogs(name, options),
    packages,
  };
}
