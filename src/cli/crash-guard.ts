/**
 * The daemon's last line of defence: an error nothing caught (an uncaught exception, a rejected
 * promise nobody handles) would end a Node 24 process mid-write. The guard turns it into a
 * call of the daemon's handler, which logs it and detaches cleanly (docs/operations.md). Errors
 * that come before the daemon has a handler are kept for it. After the first one the process
 * ends within `deadlineMs` whatever happens, since its state is no longer trusted.
 */

export type FatalOrigin = "uncaughtException" | "unhandledRejection";
export type FatalHandler = (error: unknown, origin: FatalOrigin) => void;

/** The part of `process` the guard uses. */
export interface GuardedProcess {
  on(event: "uncaughtException", listener: (error: Error) => void): unknown;
  on(event: "unhandledRejection", listener: (reason: unknown) => void): unknown;
}

export interface CrashGuard {
  /** Hands every fatal error to `handler`, first those that came before. */
  onFatal(handler: FatalHandler): void;
}

export function installCrashGuard(
  proc: GuardedProcess,
  options: { readonly deadlineMs: number; readonly exit: (code: number) => void },
): CrashGuard {
  let handler: FatalHandler | undefined;
  const early: [unknown, FatalOrigin][] = [];
  let deadline: ReturnType<typeof setTimeout> | undefined;
  const fatal = (error: unknown, origin: FatalOrigin): void => {
    if (deadline === undefined) {
      deadline = setTimeout(() => options.exit(1), options.deadlineMs);
      deadline.unref();
    }
    if (handler === undefined) early.push([error, origin]);
    else handler(error, origin);
  };
  proc.on("uncaughtException", (error) => fatal(error, "uncaughtException"));
  proc.on("unhandledRejection", (reason) => fatal(reason, "unhandledRejection"));
  return {
    onFatal(next) {
      handler = next;
      for (const [error, origin] of early.splice(0)) next(error, origin);
    },
  };
}
