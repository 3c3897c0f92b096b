import type { InstalledPackageInfo } from "../core/agent-status.ts";
import type { InvalidDefinition } from "../core/lifecycle-model.ts";

/**
 * The validated, frozen form of one agent definition (SPEC §2). Produced once
 * by `parseAgentDefinition`; nothing downstream re-reads raw TOML/JSON.
 * Durations are milliseconds here (the file says seconds).
 */
export interface DeploymentSettings {
  /** argv template; placeholders `{port}` `{host}` `{config}` `{name}` `{dir}`; never run through a shell. */
  readonly command: readonly string[];
  /** Added to the inherited environment. */
  readonly env: Readonly<Record<string, string>>;
  /** 0 = lease the next free port; otherwise this fixed port. */
  readonly port: number;
  readonly autostart: boolean;
  /** Undefined = server `restart_on_failure`. */
  readonly autoRestart: boolean | undefined;
  /** Undefined = server `max_restarts`. */
  readonly maxRestarts: number | undefined;
  /** First backoff delay (default 1000); doubles per consecutive restart, capped at 30 s. */
  readonly restartDelayMs: number;
  /** Healthy uptime after which the restart count resets (default 60000). */
  readonly stableAfterMs: number;
  /** `""` disables HTTP probing (default `/status`). */
  readonly healthPath: string;
  /** Undefined = server `health_check_interval`. */
  readonly healthCheckIntervalMs: number | undefined;
  /** Default 10000. */
  readonly healthTimeoutMs: number;
  /** Default 3. */
  readonly failureThreshold: number;
  /** Default 30000. */
  readonly startTimeoutMs: number;
  /** Grace between SIGTERM and SIGKILL (default 10000). */
  readonly stopTimeoutMs: number;
  /** Size at which the agent's log is rotated, bytes; undefined = server `log_max_bytes`. */
  readonly logMaxBytes: number | undefined;
  /** Rotated log files kept (`.1` … `.<n>`); undefined = server `log_keep`. */
  readonly logKeep: number | undefined;
}

export interface ResourceSettings {
  /** Resident memory limit of the process group in bytes; undefined = none. */
  readonly memoryLimitBytes: number | undefined;
}

/**
 * `[kubernetes]`: how the agent runs on a cluster (`render`, `serve --backend kubernetes`;
 * docs/kubernetes.md). Ignored by the local backend, but validated everywhere like the rest.
 */
export interface KubernetesSettings {
  /** Container image; undefined = `--image`, else `atoll-agent:<package version>`. */
  readonly image: string | undefined;
  /** Namespace of the agent's objects; undefined = `--namespace`, else none (kubectl's). */
  readonly namespace: string | undefined;
  /** CPU request and limit as a Kubernetes quantity (`"500m"`, `"2"`); undefined = none. */
  readonly cpu: string | undefined;
  /** `nvidia.com/gpu` limit; 0 = none. */
  readonly gpus: number;
  /** `nodeSelector` of the pod; empty = none. */
  readonly nodeSelector: Readonly<Record<string, string>>;
}

export interface AgentDefinition {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  readonly capabilities: readonly string[];
  /** Absolute path of agent.toml / agent.json. */
  readonly configPath: string;
  /** Absolute path of the agent's directory (cwd of its process). */
  readonly dir: string;
  readonly deployment: DeploymentSettings;
  readonly resources: ResourceSettings;
  readonly kubernetes: KubernetesSettings;
  /** Non-fatal problems (unknown keys, ignored agent.json), shown in status. */
  readonly warnings: readonly string[];
  /** The installed package (SPEC §12) the definition comes from; undefined in the agents directory. */
  readonly installedPackage?: InstalledPackageInfo | undefined;
}

/** One entry found by discovery: usable, or INVALID with a message naming file, key and problem. */
export type DiscoveredAgent =
  | { readonly kind: "valid"; readonly definition: AgentDefinition }
  | ({
      readonly kind: "invalid";
      readonly name: string;
      readonly dir: string;
    } & InvalidDefinition);

/** The default `[deployment].command` (SPEC §2); `atoll-agent` resolves to the bundled runtime. */
export const DEFAULT_COMMAND: readonly string[] = Object.freeze([
  "atoll-agent",
  "--server",
  "--port",
  "{port}",
  "--agent",
  "{config}",
]);

/**
 * What a backend keeps of one discovered agent: its definition, or why it is INVALID. (The
 * discovery-only facts, name and directory, are dropped: the backend keys entries by name.)
 */
export type DefinitionEntry =
  | { readonly kind: "valid"; readonly definition: AgentDefinition }
  | ({ readonly kind: "invalid" } & InvalidDefinition);

/** The name of a discovered agent, valid or not. */
export function discoveredName(found: DiscoveredAgent): string {
  return found.kind === "valid" ? found.definition.name : found.name;
}

/** The backend's entry of one discovered agent. */
export function definitionEntry(found: DiscoveredAgent): DefinitionEntry {
  return found.kind === "valid"
    ? { kind: "valid", definition: found.definition }
    : {
        kind: "invalid",
        configPath: found.configPath,
        message: found.message,
        warnings: found.warnings,
      };
}
