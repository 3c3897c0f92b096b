/**
 * Operations of the Kubernetes backend that wait for the cluster (a Deploy until its pod is
 * Ready, an Undeploy until no pod is left, a log follower until the next pod): each waiter's
 * check runs on every cache change of its agent, level-triggered, never on a timer.
 */
import type { AgentStatus } from "../core/agent-status.ts";
import { DeployError } from "../core/errors.ts";

/** What a check says: done with a status, failed with an error, or undefined to keep waiting. */
export type WaitOutcome = AgentStatus | Error | undefined;

interface Waiter {
  readonly check: () => WaitOutcome;
  readonly resolve: (status: AgentStatus) => void;
  readonly reject: (error: Error) => void;
}

/** The error of a Deploy or Restart that an Undeploy took over from (as locally). */
export function supersededError(name: string): DeployError {
  return new DeployError("OPERATION_SUPERSEDED", `agent ${name}: an Undeploy took over`, {
    agent: name,
  });
}

export class AgentWaiters {
  readonly #waiters = new Map<string, Set<Waiter>>();

  /** Runs the checks of `name`'s waiters; settles (and drops) those that are done. */
  wake(name: string): void {
    for (const waiter of [...(this.#waiters.get(name) ?? [])]) {
      let outcome: WaitOutcome;
      try {
        outcome = waiter.check();
      } catch (error) {
        outcome = error as Error;
      }
      if (outcome === undefined) continue;
      this.#waiters.get(name)?.delete(waiter);
      if (outcome instanceof Error) waiter.reject(outcome);
      else waiter.resolve(outcome);
    }
  }

  /** Rejects every waiter with `error` (the server is shutting down). */
  rejectAll(error: Error): void {
    for (const waiters of this.#waiters.values()) {
      for (const waiter of waiters) waiter.reject(error);
    }
    this.#waiters.clear();
  }

  /**
   * Resolves when `check` gives a status, rejects when it gives an error, when `timeout.ms`
   * passes (with `timeout.onTimeout()`), or when `superseded` aborts (OPERATION_SUPERSEDED).
   * Checked at once and on every {@link wake} of `name`.
   */
  wait(
    name: string,
    check: () => WaitOutcome,
    timeout?: { readonly ms: number; readonly onTimeout: () => Error },
    superseded?: AbortSignal,
  ): Promise<AgentStatus> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onSuperseded = (): void => {
        this.#remove(name, waiter);
        clearTimeout(timer);
        reject(supersededError(name));
      };
      superseded?.addEventListener("abort", onSuperseded, { once: true });
      const waiter: Waiter = {
        check,
        resolve: (status) => {
          clearTimeout(timer);
          superseded?.removeEventListener("abort", onSuperseded);
          resolve(status);
        },
        reject: (error) => {
          clearTimeout(timer);
          superseded?.removeEventListener("abort", onSuperseded);
          reject(error);
        },
      };
      if (superseded?.aborted) {
        onSuperseded();
        return;
      }
      this.#add(name, waiter);
      if (timeout !== undefined) {
        timer = setTimeout(() => {
          this.#remove(name, waiter);
          reject(timeout.onTimeout());
        }, timeout.ms);
      }
      this.wake(name);
    });
  }

  /**
   * Resolves with the status `moved` gives on a later wake of `name` (it is not checked at once:
   * it waits for the next change), or undefined when `signal` aborts, `moved` throws, or the
   * waiters are rejected (shutdown).
   */
  next(
    name: string,
    moved: () => AgentStatus | undefined,
    signal: AbortSignal,
  ): Promise<AgentStatus | undefined> {
    return new Promise((resolve) => {
      if (signal.aborted) {
        resolve(undefined);
        return;
      }
      const onAbort = (): void => {
        this.#remove(name, waiter);
        resolve(undefined);
      };
      const waiter: Waiter = {
        check: moved,
        resolve: (status) => {
          signal.removeEventListener("abort", onAbort);
          resolve(status);
        },
        reject: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(undefined);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#add(name, waiter);
    });
  }

  #add(name: string, waiter: Waiter): void {
    let set = this.#waiters.get(name);
    if (set === undefined) {
      set = new Set();
      this.#waiters.set(name, set);
    }
    set.add(waiter);
  }

  #remove(name: string, waiter: Waiter): void {
    this.#waiters.get(name)?.delete(waiter);
  }
}
