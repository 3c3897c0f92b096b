/**
 * What the Kubernetes backend enforces on a running agent that kubelet would not (SPEC §2,
 * docs/kubernetes.md): past `max_restarts` container restarts the agent is scaled to 0
 * (FAILED/CRASH_LOOP) instead of restarting for ever, an exit with code 0 stops it
 * (STOPPED/EXITED) instead of being restarted, and once healthy for `stable_after` its restarts
 * so far stop counting. A stop records its reason in the Deployment's annotations, so that it
 * survives a restart of the server. Level-triggered: the backend calls `enforce` on every
 * change of the agent, and a stop already under way is not started twice.
 */
import type { AgentStatus } from "../core/agent-status.ts";
import { runInBackground } from "../core/background-task.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import type { ClusterClient } from "./cluster-client.ts";
import {
  type ClusterFacts,
  STOP_MESSAGE_ANNOTATION,
  STOP_REASON_ANNOTATION,
} from "./cluster-state.ts";
import { objectName } from "./object-names.ts";

export interface AgentPolicyDeps {
  readonly client: Pick<ClusterClient, "patchDeployment" | "scale">;
  readonly logger: Logger;
  readonly clock: Clock;
  /** The agent's `stable_after` in ms; undefined without a valid definition. */
  readonly stableAfterMs: (name: string) => number | undefined;
  /** `name` has been healthy for `stable_after` (by the timer): its restarts stop counting. */
  readonly onStable: (name: string) => void;
}

export class AgentPolicy {
  readonly #deps: AgentPolicyDeps;
  /** Agents whose budget or clean exit is being acted on (once per occurrence). */
  readonly #stopping = new Set<string>();
  readonly #stableTimers = new Map<string, NodeJS.Timeout>();
  #closed = false;

  constructor(deps: AgentPolicyDeps) {
    this.#deps = deps;
  }

  /** Stops acting (the server is shutting down); the agents keep running. */
  close(): void {
    this.#closed = true;
    for (const timer of this.#stableTimers.values()) clearTimeout(timer);
    this.#stableTimers.clear();
  }

  /**
   * The restart budget, a clean exit, and the stable-period reset of the budget, for `name`
   * with its derived `status`, its `facts` and its Deployment's `replicas`.
   */
  enforce(name: string, status: AgentStatus, facts: ClusterFacts, replicas: number): void {
    const target = objectName(name);
    if (replicas === 0 || !target.ok || this.#stopping.has(name) || this.#closed) return;
    if (facts.exitedCleanly) {
      this.stop(name, target.name, "EXITED", "exited with code 0: the agent stopped itself");
      return;
    }
    if (status.restartCount > status.maxRestarts) {
      this.stop(
        name,
        target.name,
        "CRASH_LOOP",
        `${status.restartCount} container restarts, more than max_restarts ${status.maxRestarts}: scaled to 0`,
      );
      return;
    }
    this.#scheduleStableReset(name, status);
  }

  /**
   * Records why on the Deployment `object` and scales it to 0, in the background. A failure is
   * logged; the agent is then no longer being stopped, and its next change tries again.
   */
  stop(name: string, object: string, reason: string, message: string): void {
    this.#stopping.add(name);
    const { client, logger } = this.#deps;
    logger.info("stopping agent on the cluster", { agent: name, reason, message });
    runInBackground(
      { logger, fields: { agent: name, reason } },
      "stop on the cluster",
      async () => {
        try {
          await client.patchDeployment(object, {
            metadata: {
              annotations: { [STOP_REASON_ANNOTATION]: reason, [STOP_MESSAGE_ANNOTATION]: message },
            },
          });
          await client.scale(object, 0);
        } finally {
          this.#stopping.delete(name);
        }
      },
    );
  }

  /** Once healthy for `stable_after`, restarts so far stop counting (SPEC §2). */
  #scheduleStableReset(name: string, status: AgentStatus): void {
    const existing = this.#stableTimers.get(name);
    if (existing !== undefined) clearTimeout(existing);
    this.#stableTimers.delete(name);
    if (status.state !== "RUNNING" || status.health !== "HEALTHY" || status.restartCount === 0)
      return;
    const stableAfterMs = this.#deps.stableAfterMs(name);
    if (stableAfterMs === undefined || status.startTimeMs === undefined) return;
    const dueInMs = status.startTimeMs + stableAfterMs - this.#deps.clock.now();
    const reset = (): void => {
      this.#stableTimers.delete(name);
      this.#deps.onStable(name);
    };
    if (dueInMs <= 0) reset();
    else this.#stableTimers.set(name, setTimeout(reset, dueInMs).unref());
  }
}
