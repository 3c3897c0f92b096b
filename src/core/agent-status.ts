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
  readonly name: string;
  readonly state: AgentStateName;
  readonly health: HealthName;
  /** 0 when no port is leased. */
  readonly port: number;
  /** 0 when no process. */
  readonly pid: number;
  readonly restartCount: number;
  readonly maxRestarts: number;
  readonly configPath: string;
  readonly version: string;
  readonly description: string;
  readonly capabilities: readonly string[];
  readonly startTimeMs: number | undefined;
  readonly stateReason: string;
  readonly stateMessage: string;
  readonly stateSinceMs: number;
  readonly lastExit: ExitRecord | undefined;
  readonly nextRestartAtMs: number | undefined;
  readonly lastHealthCheckMs: number | undefined;
  readonly healthMessage: string;
  readonly memoryBytes: number;
  readonly warnings: readonly string[];
  readonly definitionRemoved: boolean;
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
