/**
 * Structured logging as a dependency: library code receives a `Logger` and never touches
 * `console`. The daemon builds one JSON-lines logger at its composition root.
 */
import { type Clock, systemClock } from "./clock.ts";

/** Extra machine-readable facts attached to one log line. */
export type LogFields = Readonly<Record<string, unknown>>;

/** A structured logger: a message and machine-readable fields per call. Logging never throws. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/** Log levels, most verbose first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** True when `value` names a log level (for validating `log_level`). */
export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === "string" && (LOG_LEVELS as readonly string[]).includes(value);
}

/** The part of a writable stream the logger needs (`process.stderr`, a file stream, a test sink). */
export interface LogSink {
  write(chunk: string): unknown;
}

export interface JsonLoggerOptions {
  /** Where lines go. */
  readonly sink: LogSink;
  /** Lines below this level are dropped. Default `info`. */
  readonly level?: LogLevel;
  /** Source of the `time` field. Default the system clock. */
  readonly clock?: Clock;
  /** Fields added to every line (for example `component`). */
  readonly fields?: LogFields;
}

/**
 * A logger writing one JSON object per line: `{"time","level","msg",...fields}`.
 * Field values that JSON cannot carry are made safe: `bigint` becomes a decimal string, an
 * `Error` becomes `{name, message, stack, cause}`, a cycle becomes `"[Circular]"`. Logging never
 * throws.
 */
export function createJsonLogger(options: JsonLoggerOptions): Logger {
  const minRank = LOG_LEVELS.indexOf(options.level ?? "info");
  const clock = options.clock ?? systemClock;
  const base = options.fields ?? {};
  const log = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(level) < minRank) return;
    const record = {
      time: new Date(clock.now()).toISOString(),
      level,
      msg,
      ...base,
      ...fields,
    };
    options.sink.write(`${safeStringify(record)}\n`);
  };
  return {
    debug: (msg, fields) => log("debug", msg, fields),
    info: (msg, fields) => log("info", msg, fields),
    warn: (msg, fields) => log("warn", msg, fields),
    error: (msg, fields) => log("error", msg, fields),
  };
}

/** A logger that drops everything; for tests and embedders that log elsewhere. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

function safeStringify(record: Record<string, unknown>): string {
  // Ancestors of the value being visited: a value already among them is a cycle. (A WeakSet of
  // everything seen would also flag an object that is merely referenced twice.)
  // Each entry keeps the emitted object and the original it stands for (they differ for Errors).
  const ancestors: { emitted: unknown; original: unknown }[] = [];
  function replacer(this: unknown, _key: string, value: unknown): unknown {
    if (typeof value === "bigint") return value.toString();
    if (typeof value !== "object" || value === null) return value;
    while (ancestors.length > 0 && ancestors.at(-1)?.emitted !== this) ancestors.pop();
    if (ancestors.some((a) => a.original === value)) return "[Circular]";
    const out =
      value instanceof Error
        ? {
            name: value.name,
            message: value.message,
            stack: value.stack,
            ...(value.cause === undefined ? {} : { cause: value.cause }),
          }
        : value;
    ancestors.push({ emitted: out, original: value });
    return out;
  }
  try {
    return JSON.stringify(record, replacer);
  } catch (error) {
    // A throwing toJSON or getter must not turn a log call into a crash.
    return JSON.stringify({
      time: record.time,
      level: record.level,
      msg: record.msg,
      logError: `fields not serializable: ${String(error)}`,
    });
  }
}
