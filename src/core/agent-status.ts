import type { AgentStateName, ExitRecord, HealthName } from "./agent-state.ts";

/** Archive formats of agent packages (SPEC §12). */
export type PackageFormat = "tar.gz" | "zip";

/** Provisioning steps of a package: `npm ci --omit=dev`, a `.venv` from requirements.txt. */
export type ProvisioningStep = "npm" | "venv";

/** The installed package an agent's definition comes from (proto `InstalledPackage`). */
export interface InstalledPackageInfo {
  /** SHA-256 of the archive as uploaded, lower-case hex. */
  readonly sha256: string;
  readonly installedAtMs: number;
  readonly format: PackageFormat;
  readonly archiveBytes: number;
  readonly unpackedBytes: number;
  readonly entries: number;
  readonly provisioned: readonly ProvisioningStep[];
}

/**
 * The domain form of one agent's full status (proto `Agent`), built on demand
 * by its runner. Times are ms since epoch; `undefined` means "not set".
 */
export interface AgentStatus {
  /** The agent's name (`[agent].name`, else its directory's). */
  readonly name: string;
  readonly state: AgentStateName;
  readonly health: HealthName;
  /** The leased port; 0 when no port is leased. */
  readonly port: number;
  /** The process (and process group) id; 0 when no process. */
  readonly pid: number;
  /** Automatic restarts counted against `maxRestarts` (reset by a manual start or restart). */
  readonly restartCount: number;
  /** The restart budget in force (`[deployment].max_restarts`, else the server's). */
  readonly maxRestarts: number;
  /** Absolute path of the definition file. */
  readonly configPath: string;
  /** `[agent].version`, description and capabilities, "" / [] when not given. */
  readonly version: string;
  readonly description: string;
  readonly capabilities: readonly string[];
  /** When the current process started, ms since the epoch. */
  readonly startTimeMs: number | undefined;
  /** Machine reason of the state (UPPER_SNAKE: `EXITED`, `CRASH_LOOP`, ...), "" when none. */
  readonly stateReason: string;
  /** Human explanation of the state (for INVALID: the validation message). */
  readonly stateMessage: string;
  /** When the agent entered its state, ms since the epoch. */
  readonly stateSinceMs: number;
  /** How the last process ended. */
  readonly lastExit: ExitRecord | undefined;
  /** In BACKOFF: when the next start is due, ms since the epoch. */
  readonly nextRestartAtMs: number | undefined;
  /** When the last health probe finished, ms since the epoch. */
  readonly lastHealthCheckMs: number | undefined;
  /** Outcome of the last probe ("HTTP 200", "connection refused", ...). */
  readonly healthMessage: string;
  /** Resident memory of the agent's process group, bytes; 0 when not running. */
  readonly memoryBytes: number;
  /** Non-fatal findings in the definition (unknown keys, ignored files). */
  readonly warnings: readonly string[];
  /** True when the definition is gone while the agent still runs (until it stops). */
  readonly definitionRemoved: boolean;
  /** The agent's output log, `<state_dir>/logs/<name>.log`. */
  readonly logPath: string;
  /** Where the agent runs: this host's name (local), or its pod's node name (Kubernetes). */
  readonly host: string;
  /** The pod name (Kubernetes); "" locally. */
  readonly instance: string;
  /**
   * The package the definition in effect was installed from; undefined for an agent of the
   * agents directory (proto `source` DIRECTORY).
   */
  readonly installedPackage?: InstalledPackageInfo | undefined;
}

/** One observable change of an agent, as published to watchers. */
export interface AgentChange {
  /** Monotonic across the whole server and across its restarts (see EventHub). */
  readonly revision: number;
  /** "removed": the agent is no longer known (definition gone while not live). */
  readonly kind: "change" | "removed";
  readonly name: string;
  readonly previousState: AgentStateName;
  readonly previousHealth: HealthName;
  readonly status: AgentStatus;
  readonly atMs: number;
}
