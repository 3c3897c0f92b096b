/**
 * Work that nobody awaits (a spawn, a probe, a cluster patch, a watch loop, a request stream
 * pumped beside its call) runs through `runInBackground`, never as a discarded promise: its
 * result goes to `onResult`, and whatever it throws or rejects with, or `onResult` throws, is
 * logged with the scope's context and handed to `onFailure`, which moves the owner to a defined
 * state. An unhandled rejection ends a Node 24 process (supervised agents and all) and shows as
 * an error in a browser's console; this is the one place that prevents both.
 *
 * Pure promise plumbing, no I/O: every layer uses it (the supervisor, the cluster backend, the
 * package store, the transports, the dashboard page), each with its own scope.
 */
import type { LogFields, Logger } from "./logger.ts";

/** Moves the owner of failed background work to a defined state; should not throw. */
export type BackgroundFailureHandler = (task: string, error: unknown) => void;

/** Where a failure of background work goes. */
export type BackgroundScope =
  | {
      /** Logs a failure at error level as `background task failed`, with `fields`, task, error. */
      readonly logger: Logger;
      /** Context every failure line carries: the agent's name, what is watched. */
      readonly fields?: LogFields;
      /** Called after the failure was logged. */
      readonly onFailure?: BackgroundFailureHandler;
    }
  | {
      /**
       * No log to write to (a client library, the browser page): `onFailure` is then the
       * failure's only destination and must show it (reject the caller's call, put it on the
       * page).
       */
      readonly logger?: undefined;
      readonly fields?: undefined;
      readonly onFailure: BackgroundFailureHandler;
    };

/**
 * Runs `work` without awaiting it. `task` names it in the log line and for `onFailure`
 * ("spawn", "stop on the cluster"). Never throws and never leaves a rejection unhandled, with
 * one exception: an `onFailure` that itself throws in a scope without a logger, a bug that then
 * surfaces as an unhandled rejection rather than vanishing.
 */
export function runInBackground<T>(
  scope: BackgroundScope,
  task: string,
  work: () => Promise<T>,
  onResult?: (value: T) => void,
): void {
  const fail = (error: unknown): void => {
    scope.logger?.error("background task failed", { ...scope.fields, task, error });
    if (scope.onFailure === undefined) return;
    try {
      scope.onFailure(task, error);
    } catch (handlerError) {
      if (scope.logger === undefined) throw handlerError;
      scope.logger.error("background task failure handler threw", {
        ...scope.fields,
        task,
        error: handlerError,
      });
    }
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
      onResult?.(value);
    } catch (error) {
      fail(error);
    }
  }, fail);
}
