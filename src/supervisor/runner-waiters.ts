/**
 * Callers waiting for an operation's outcome. The machine knows them by number only (it is pure
 * data); this table holds their promises and settles them when told to.
 */
import type { AgentStatus } from "../core/agent-status.ts";
import { DeployError } from "../core/errors.ts";
import type { Outcome } from "../core/lifecycle-events.ts";

interface Entry {
  settle(outcome: Outcome): void;
  /** Rejects with an unexpected error (the rpc layer answers INTERNAL, details stay in the log). */
  crash(error: unknown): void;
}

export class RunnerWaiters {
  readonly #entries = new Map<number, Entry>();
  readonly #status: () => AgentStatus;
  #next = 1;

  constructor(status: () => AgentStatus) {
    this.#status = status;
  }

  /** A Deploy or Restart: resolves with the agent's status once RUNNING and healthy. */
  start(): { id: number; promise: Promise<AgentStatus> } {
    return this.#add(() => this.#status());
  }

  /** An Undeploy or shutdown: resolves once stopped, with whether SIGKILL was needed. */
  stop(): { id: number; promise: Promise<{ status: AgentStatus; killed: boolean }> } {
    return this.#add((killed) => ({ status: this.#status(), killed }));
  }

  #add<T>(value: (killed: boolean) => T): { id: number; promise: Promise<T> } {
    const id = this.#next++;
    const promise = new Promise<T>((resolve, reject) => {
      this.#entries.set(id, {
        settle(outcome) {
          if (outcome.ok) {
            resolve(value(outcome.killed));
          } else {
            const { code, message, metadata } = outcome.failure;
            reject(new DeployError(code, message, { ...metadata }));
          }
        },
        crash: reject,
      });
    });
    return { id, promise };
  }

  settle(ids: readonly number[], outcome: Outcome): void {
    for (const id of ids) this.#take(id)?.settle(outcome);
  }

  crash(id: number, error: unknown): void {
    this.#take(id)?.crash(error);
  }

  #take(id: number): Entry | undefined {
    const entry = this.#entries.get(id);
    this.#entries.delete(id);
    return entry;
  }
}
