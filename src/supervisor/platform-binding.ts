import { probeHttp } from "../platform/http-probe.ts";
import { createGroupMemoryReader } from "../platform/proc-info.ts";
import { SpawnError, spawnAgent } from "../platform/spawn-agent.ts";
import { terminateGroup } from "../platform/terminate-group.ts";
import { type RunnerPlatform, SpawnFailure } from "./runner-deps.ts";

/** The runner's OS facilities, bound to the real `src/platform/` modules. */
export function createRunnerPlatform(): RunnerPlatform {
  return {
    async spawn(options) {
      try {
        return await spawnAgent(options);
      } catch (error) {
        if (error instanceof SpawnError) throw new SpawnFailure(error.reason, error.message);
        throw error;
      }
    },
    terminateGroup: (pgid, options) => terminateGroup(pgid, options),
    async probe(options) {
      const result = await probeHttp(options);
      return { ok: result.ok, message: result.message };
    },
    groupResidentBytes: createGroupMemoryReader(),
  };
}
