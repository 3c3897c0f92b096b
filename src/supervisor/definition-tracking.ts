/**
 * Definitions as the lifecycle machine sees them: a discovery result becomes an update carrying
 * the settings its decisions read, with the server-wide defaults (SPEC §3) filled in where the
 * definition leaves a key to the server.
 */
import type { AgentDefinition, DefinitionEntry } from "../config/agent-definition.ts";
import type { DefinitionUpdate, LifecycleSettings } from "../core/lifecycle-model.ts";
import type { AgentDefaults } from "./runner-deps.ts";

/** A discovery result for one agent name, as the registry hands it to the runner. */
export type DiscoveryUpdate = DefinitionEntry | { readonly kind: "removed" };

/** Default period of probes while STARTING. */
export const DEFAULT_START_PROBE_INTERVAL_MS = 100;

/** The lifecycle settings of `def`, defaults of the server filled in. */
export function lifecycleSettings(
  def: AgentDefinition,
  defaults: AgentDefaults,
  startProbeIntervalMs = DEFAULT_START_PROBE_INTERVAL_MS,
): LifecycleSettings {
  const d = def.deployment;
  return Object.freeze({
    fixedPort: d.port,
    autoRestart: d.autoRestart ?? defaults.autoRestart,
    maxRestarts: d.maxRestarts ?? defaults.maxRestarts,
    restartDelayMs: d.restartDelayMs,
    stableAfterMs: d.stableAfterMs,
    healthPath: d.healthPath,
    healthCheckIntervalMs: d.healthCheckIntervalMs ?? defaults.healthCheckIntervalMs,
    healthTimeoutMs: d.healthTimeoutMs,
    failureThreshold: d.failureThreshold,
    startTimeoutMs: d.startTimeoutMs,
    stopTimeoutMs: d.stopTimeoutMs,
    startProbeIntervalMs,
    memoryLimitBytes: def.resources.memoryLimitBytes,
  });
}

/** The machine's form of a discovery update. */
export function toDefinitionUpdate(
  update: DiscoveryUpdate,
  defaults: AgentDefaults,
  startProbeIntervalMs?: number,
): DefinitionUpdate<AgentDefinition> {
  if (update.kind !== "valid") return update;
  return {
    kind: "valid",
    definition: update.definition,
    settings: lifecycleSettings(update.definition, defaults, startProbeIntervalMs),
  };
}
