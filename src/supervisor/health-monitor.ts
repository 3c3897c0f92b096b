/**
 * Performs the machine's watching effects: one HTTP probe (its result, or its failure, becomes a
 * `probed` event: a probe that throws is a failed probe) and one memory sample of the group.
 */
import type { AgentDefinition } from "../config/agent-definition.ts";
import { type BackgroundScope, runInBackground } from "../core/background-task.ts";
import type { LifecycleEvent } from "../core/lifecycle-events.ts";
import type { ProcessTree } from "../platform/process-tree.ts";
import type { RunnerDeps } from "./runner-deps.ts";

export class HealthMonitor {
  readonly #deps: RunnerDeps;
  readonly #scope: BackgroundScope;
  readonly #dispatch: (event: LifecycleEvent<AgentDefinition>) => void;

  constructor(
    deps: RunnerDeps,
    scope: BackgroundScope,
    dispatch: (event: LifecycleEvent<AgentDefinition>) => void,
  ) {
    this.#deps = deps;
    this.#scope = scope;
    this.#dispatch = dispatch;
  }

  probe(
    generation: number,
    options: {
      port: number;
      path: string;
      timeoutMs: number;
      signal: AbortSignal;
      tree: ProcessTree | undefined;
    },
  ): void {
    runInBackground(
      this.#scope,
      "probe",
      async () => {
        try {
          return await this.#deps.platform.probe({ host: this.#deps.host, ...options });
        } catch (error) {
          return { ok: false, message: error instanceof Error ? error.message : String(error) };
        }
      },
      (result) => this.#dispatch({ type: "probed", generation, ...result }),
    );
  }

  /** Synchronous: /proc is read in one go. */
  sampleMemory(generation: number, pid: number, tree: ProcessTree | undefined): void {
    let bytes: number | undefined;
    try {
      bytes = this.#deps.platform.groupResidentBytes(pid, tree);
    } catch (error) {
      this.#deps.logger.debug("memory measurement failed", {
        ...this.#scope.fields,
        error: String(error),
      });
    }
    this.#dispatch({ type: "memorySampled", generation, bytes });
  }
}
