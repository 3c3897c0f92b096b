/**
 * Background work of a runner (a spawn, a probe, terminating a group, waiting for an exit) runs
 * through `runInBackground`: its result goes to `onResult`, and anything it throws or rejects
 * with, or that `onResult` throws, is caught, logged with the agent's name and handed to
 * `onFailure`, which moves the agent to a defined state. No promise is ever left unhandled: an
 * unhandled rejection ends a Node 24 process, supervised agents and all.
 */
import type { Logger } from "../core/logger.ts";

export interface BackgroundScope {
  readonly agent: string;
  readonly logger: Logger;
  /** Called after a failure was logged; must not throw. */
  readonly onFailure: (task: string, error: unknown) => void;
}

export function runInBackground<T>(
  scope: BackgroundScope,
  task: string,
  work: () => Promise<T>,
  onResult: (value: T) => void,
): void {
  const fail = (error: unknown): void => {
    scope.logger.error("agent background task failed", { agent: scope.agent, task, error });
    scope.onFailure(task, error);
  };
  let promise: Promise<T>;
  try {
    promise = work();
  } catch (error) {
    fail(error);
    return;
  }
  promise.then((value) => {
    try {
      onResult(value);
    } catch (error) {
      fail(error);
    }
  }, fail);
}
