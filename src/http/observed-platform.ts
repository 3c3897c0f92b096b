/**
 * The probe and memory hooks of the metrics, as a decorator of the local supervisor's
 * `RunnerPlatform` rather than code inside the runner: the composition root wraps the platform
 * it hands to the registry, and every health probe's duration and every memory reading pass
 * through here on their way to the runner, unchanged.
 *
 * A probe is known by the port it went to and a memory reading by the process group it measured;
 * the metrics map those to agents from the change events (each live agent holds its own port and
 * process group), so the runner's interfaces need no agent name.
 */
import type { RunnerPlatform } from "../supervisor/runner-deps.ts";

export interface PlatformObserver {
  /** A health probe to `port` finished (passed, failed or timed out) after `seconds`. */
  observeProbe(port: number, seconds: number): void;
  /** The resident memory of the process group `pgid` was measured. */
  observeMemory(pgid: number, bytes: number): void;
}

/** `platform` with every probe timed and every memory reading reported to `observer`. */
export function observeRunnerPlatform(
  platform: RunnerPlatform,
  observer: PlatformObserver,
): RunnerPlatform {
  return {
    ...platform,
    spawn: (options) => platform.spawn(options),
    terminateGroup: (pgid, options) => platform.terminateGroup(pgid, options),
    async probe(options) {
      const startMs = performance.now();
      try {
        return await platform.probe(options);
      } finally {
        // An aborted probe (the process went away) is not a probe result.
        if (!options.signal.aborted) {
          observer.observeProbe(options.port, (performance.now() - startMs) / 1000);
        }
      }
    },
    groupResidentBytes(pgid, tree) {
      const bytes = platform.groupResidentBytes(pgid, tree);
      observer.observeMemory(pgid, bytes);
      return bytes;
    },
  };
}
