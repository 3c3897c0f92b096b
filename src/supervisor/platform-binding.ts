import { probeHttp } from "../platform/http-probe.ts";
import type { OutputKeeper } from "../platform/output-keeper.ts";
import { createGroupMemoryReader } from "../platform/proc-info.ts";
import { SpawnError, spawnAgent } from "../platform/spawn-agent.ts";
import { terminateGroup } from "../platform/terminate-group.ts";
import { type RunnerPlatform, SpawnFailure } from "./runner-deps.ts";

/** What the runners' platform is built on. */
export interface RunnerPlatformOptions {
  /** Owns the agents' output: each agent writes into a FIFO this keeper reads (issue 14). */
  readonly output: Pick<OutputKeeper, "prepare">;
}

/** The runner's OS facilities, bound to the real `src/platform/` modules. */
export function createRunnerPlatform(options: RunnerPlatformOptions): RunnerPlatform {
  return {
    async spawn({ argv, cwd, env, logPath, name, logMaxBytes, logKeep }) {
      let fifo: string;
      try {
        fifo = await options.output.prepare({
          name,
          log: logPath,
          maxBytes: logMaxBytes,
          keep: logKeep,
        });
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        throw new SpawnFailure("SPAWN_FAILED", `cannot start ${name}: ${message}`);
      }
      try {
        return await spawnAgent({ argv, cwd, env, output: { fifo } });
      } catch (error) {
        if (error instanceof SpawnError) throw new SpawnFailure(error.failure, error.message);
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
