import type { AgentCgroup, Cgroups } from "../platform/cgroups.ts";
import { probeHttp } from "../platform/http-probe.ts";
import type { OutputKeeper } from "../platform/output-keeper.ts";
import { createPortOwnerCheck } from "../platform/port-owner.ts";
import { createGroupMemoryReader } from "../platform/proc-info.ts";
import { processTree } from "../platform/process-tree.ts";
import { SpawnError, spawnAgent } from "../platform/spawn-agent.ts";
import { terminateGroup } from "../platform/terminate-group.ts";
import type { AgentOwnership } from "./agent-ownership.ts";
import { type RunnerPlatform, SpawnFailure } from "./runner-deps.ts";

/** What the runners' platform is built on. */
export interface RunnerPlatformOptions {
  /** Owns the agents' output: each agent writes into a FIFO this keeper reads (issue 14). */
  readonly output: Pick<OutputKeeper, "prepare">;
  /**
   * The agents' cgroups: each process is started in a new one, which holds its whole tree. None:
   * the tree is the process group and, with `ownership`, the processes carrying the agent's token.
   */
  readonly cgroups?: Cgroups | undefined;
  /** Tells the processes of an agent by their token where no cgroup holds them. */
  readonly ownership?: AgentOwnership | undefined;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The runner's OS facilities, bound to the real `src/platform/` modules. */
export function createRunnerPlatform(options: RunnerPlatformOptions): RunnerPlatform {
  const groupResidentBytes = createGroupMemoryReader();
  const foreignListener = createPortOwnerCheck();
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
        throw new SpawnFailure("SPAWN_FAILED", `cannot start ${name}: ${message(error)}`);
      }
      let cgroup: AgentCgroup | undefined;
      try {
        cgroup = options.cgroups?.create(name);
      } catch (error) {
        throw new SpawnFailure(
          "SPAWN_FAILED",
          `cannot start ${name}: its cgroup: ${message(error)}`,
        );
      }
      try {
        const agent = await spawnAgent({ argv, cwd, env, output: { fifo }, cgroup });
        const marker = cgroup === undefined ? options.ownership?.markerOf(name) : undefined;
        return {
          pid: agent.pid,
          startTimeTicks: agent.startTimeTicks,
          exited: agent.exited,
          commandLine: agent.commandLine,
          tree: processTree({ group: agent.pid, cgroup, marker }),
        };
      } catch (error) {
        cgroup?.remove();
        if (error instanceof SpawnError) throw new SpawnFailure(error.failure, error.message);
        throw error;
      }
    },
    async terminateGroup(pgid, terminateOptions) {
      const result = await terminateGroup(pgid, terminateOptions);
      terminateOptions.tree?.release();
      return result;
    },
    async probe(probeOptions) {
      const probedAtMs = performance.now();
      const result = await probeHttp(probeOptions);
      const { tree } = probeOptions;
      // Only an answer needs its owner checked: the start probes every 100 ms stay cheap.
      if (!result.ok || tree === undefined) return { ok: result.ok, message: result.message };
      const holder = await foreignListener(probeOptions.port, tree, probedAtMs);
      if (holder === undefined) return { ok: true, message: result.message };
      const who =
        holder.pid === 0 ? "not visible to the daemon" : `pid ${holder.pid}, ${holder.command}`;
      return {
        ok: false,
        message: `port ${probeOptions.port} is held by another process (${who}), not by the agent; its answer (${result.message}) does not count`,
      };
    },
    groupResidentBytes: (pgid, tree) => tree?.residentBytes() ?? groupResidentBytes(pgid),
  };
}
