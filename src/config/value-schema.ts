/**
 * One schema for the numeric configuration values of both the agent definitions (SPEC §2) and
 * the server configuration (SPEC §3): each key declares its type, unit, range, default, what 0
 * means (or that 0 is refused) and any cap beyond which a value is a warning. The definition
 * parser (`definition-fields.ts`) and the server config (`server-config-values.ts`) both check
 * values with {@link checkValue} against these rows, so a rule and its message exist once.
 *
 * Adding a key is one row here plus reading it where it is used:
 * - a definition key: add `"deployment.log_keep": count({ default: 3, zero: "keep no rotated
 *   file" })` to DEFINITION_VALUES, list it in `DEPLOYMENT_KEYS` (parse-definition.ts) and read
 *   it with `fields.value(table, "log_keep", DEFINITION_VALUES["deployment.log_keep"])`;
 * - a server key: add `log_max_bytes: size({ default: 10 * 1024 * 1024 })` to SERVER_VALUES (the
 *   row in `server-config-keys.ts` still gives its flag, type and help) and read it in
 *   `buildConfig` with `SERVER_VALUES.log_max_bytes.default` as the fallback.
 * A new kind of value is a new constructor and a case in checkValue.
 */
import { describeValue, MAX_DURATION_SECONDS, secondsToMs } from "./config-values.ts";
import { parseMemorySize } from "./memory-size.ts";

/** Shortest non-zero duration: durations are held in whole milliseconds. */
const MIN_DURATION_SECONDS = 0.001;

export interface ValueSpec {
  /**
   * `duration`: seconds in files, milliseconds in code; `integer`: a whole number; `size`: bytes,
   * written as a whole number or a string with a unit (`"100MiB"`, the units of `memory_limit`).
   */
  readonly kind: "duration" | "integer" | "size";
  /** Unit as shown in docs and messages. */
  readonly unit: "seconds" | "port" | "count" | "bytes";
  /** Smallest accepted value other than 0. */
  readonly min: number;
  readonly max: number;
  /** What 0 means; undefined when 0 is refused (unless `min` is 0). */
  readonly zero: string | undefined;
  /**
   * The default in the unit of the file; undefined when it comes from elsewhere (a server key,
   * or another key such as `max_port` from `base_port`).
   */
  readonly default: number | undefined;
  /** Above `above` the value is kept, with a warning saying what happens. */
  readonly cap:
    | { readonly above: number; readonly of: string; readonly effect: string }
    | undefined;
  /** The rule as messages say it: `must be <rule>, got <value>`. */
  readonly rule: string;
}

/** Seconds; `zero` says what 0 means (else 0 is refused); `cap` makes a longer value a warning. */
export function duration<Default extends number | undefined>(options: {
  readonly default: Default;
  readonly zero?: string;
  readonly cap?: ValueSpec["cap"];
}): ValueSpec & { readonly default: Default } {
  const range = `a number of seconds between ${MIN_DURATION_SECONDS} and ${MAX_DURATION_SECONDS}`;
  return Object.freeze({
    kind: "duration",
    unit: "seconds",
    min: MIN_DURATION_SECONDS,
    max: MAX_DURATION_SECONDS,
    zero: options.zero,
    default: options.default,
    cap: options.cap,
    rule: options.zero === undefined ? range : `0 (${options.zero}) or ${range}`,
  });
}

/** A TCP port; with `zero`, 0 is allowed and means that. */
export function port<Default extends number | undefined>(options: {
  readonly default: Default;
  readonly zero?: string;
}): ValueSpec & { readonly default: Default } {
  return Object.freeze({
    kind: "integer",
    unit: "port",
    min: 1,
    max: 65535,
    zero: options.zero,
    default: options.default,
    cap: undefined,
    rule:
      options.zero === undefined
        ? "an integer between 1 and 65535"
        : `an integer between 1 and 65535, or 0 to ${options.zero}`,
  });
}

/** A count that may be 0 (saying what 0 means). */
export function count<Default extends number | undefined>(options: {
  readonly default: Default;
  readonly zero: string;
}): ValueSpec & { readonly default: Default } {
  return Object.freeze({
    kind: "integer",
    unit: "count",
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    zero: options.zero,
    default: options.default,
    cap: undefined,
    rule: "a non-negative integer",
  });
}

/** A count of at least 1. */
export function positive<Default extends number | undefined>(options: {
  readonly default: Default;
}): ValueSpec & { readonly default: Default } {
  return Object.freeze({
    kind: "integer",
    unit: "count",
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    zero: undefined,
    default: options.default,
    cap: undefined,
    rule: "a positive integer",
  });
}

/** A whole number in [min, max] with the rule worded for messages (min 0 allows 0). */
export function integer<Default extends number | undefined>(options: {
  readonly default: Default;
  readonly min: number;
  readonly max: number;
  readonly rule: string;
  readonly zero?: string;
}): ValueSpec & { readonly default: Default } {
  return Object.freeze({
    kind: "integer",
    unit: "count",
    min: options.min,
    max: options.max,
    zero: options.zero,
    default: options.default,
    cap: undefined,
    rule: options.rule,
  });
}

/** A size in bytes, at least 1: a whole number, or a string with a unit. */
export function size<Default extends number | undefined>(options: {
  readonly default: Default;
}): ValueSpec & { readonly default: Default } {
  return Object.freeze({
    kind: "size",
    unit: "bytes",
    min: 1,
    max: Number.MAX_SAFE_INTEGER,
    zero: undefined,
    default: options.default,
    cap: undefined,
    rule: 'a positive number of bytes or a size with a unit such as "100MiB"',
  });
}

/** Rotated log files kept (`log_keep`): 0 keeps only the live file; capped so scans stay short. */
function logKeep<Default extends number | undefined>(options: {
  readonly default: Default;
}): ValueSpec & { readonly default: Default } {
  return integer({
    default: options.default,
    min: 0,
    max: 1000,
    zero: "keep only the live file",
    rule: "an integer between 0 and 1000",
  });
}

/** The restart backoff never waits longer than this (restart-policy.ts MAX_BACKOFF_MS). */
const BACKOFF_CAP = Object.freeze({
  above: 30,
  of: "the restart backoff",
  effect: "restarts wait at most 30 s",
});

/** The numeric keys of an agent definition, by key path. */
export const DEFINITION_VALUES = Object.freeze({
  "deployment.port": port({ default: 0, zero: "lease a free port" }),
  "deployment.max_restarts": count({ default: undefined, zero: "never restart automatically" }),
  "deployment.restart_delay": duration({ default: 1, zero: "restart at once", cap: BACKOFF_CAP }),
  "deployment.stable_after": duration({ default: 60, zero: "reset at the first healthy probe" }),
  "deployment.health_check_interval": duration({ default: undefined }),
  "resources.health_check_interval": duration({ default: undefined }),
  "deployment.health_timeout": duration({ default: 10 }),
  "deployment.failure_threshold": positive({ default: 3 }),
  "deployment.start_timeout": duration({ default: 30 }),
  "deployment.stop_timeout": duration({ default: 10, zero: "SIGKILL at once" }),
  // Defaults from the server keys of the same names.
  "deployment.log_max_bytes": size({ default: undefined }),
  "deployment.log_keep": logKeep({ default: undefined }),
  "kubernetes.gpus": integer({
    default: 0,
    min: 0,
    max: 1024,
    zero: "no GPU",
    rule: "a whole number of GPUs between 0 and 1024",
  }),
} satisfies Record<string, ValueSpec>);

/** The numeric keys of the server configuration, by key. */
export const SERVER_VALUES = Object.freeze({
  base_port: port({ default: 8100 }),
  // Default base_port + 999, cut at 65535.
  max_port: port({ default: undefined }),
  max_agents: positive({ default: 10 }),
  health_check_interval: duration({ default: 30 }),
  max_restarts: count({ default: 3, zero: "never restart automatically" }),
  max_package_bytes: size({ default: 100 * 1024 * 1024 }),
  log_max_bytes: size({ default: 10 * 1024 * 1024 }),
  log_keep: logKeep({ default: 3 }),
} satisfies Record<string, ValueSpec>);

/** What an integer server key without a row accepts. */
const FALLBACK_INTEGER = count({ default: undefined, zero: "none" });

/** The row of server key `key`; a non-negative integer for an integer key without one. */
export function serverValueSpec(key: string): ValueSpec {
  return Object.hasOwn(SERVER_VALUES, key)
    ? SERVER_VALUES[key as keyof typeof SERVER_VALUES]
    : FALLBACK_INTEGER;
}

export type CheckedValue =
  /** `value` in the unit of the file (seconds for durations); `warning` when beyond a cap. */
  | { readonly ok: true; readonly value: number; readonly warning: string | undefined }
  | { readonly ok: false; readonly problem: string };

/**
 * Checks `raw` against `spec`. `fromText`: `raw` is text from the environment or a flag, where
 * numbers are written in decimal (a file holds JSON or TOML numbers instead). `path` names the
 * key in a warning.
 */
export function checkValue(
  spec: ValueSpec,
  raw: unknown,
  options: { readonly fromText: boolean; readonly path: string },
): CheckedValue {
  if (spec.kind === "size") return checkSize(spec, raw);
  const pattern = spec.kind === "integer" ? /^\d+$/ : /^(\d+(\.\d*)?|\.\d+)$/;
  const value =
    options.fromText && typeof raw === "string" && pattern.test(raw) ? Number(raw) : raw;
  const refused: CheckedValue = {
    ok: false,
    problem: `must be ${spec.rule}, got ${describeValue(raw)}`,
  };
  if (typeof value !== "number" || !Number.isFinite(value)) return refused;
  if (value === 0 && (spec.zero !== undefined || spec.min === 0)) {
    return { ok: true, value: 0, warning: undefined };
  }
  const inRange =
    value >= spec.min &&
    value <= spec.max &&
    (spec.kind === "integer" ? Number.isSafeInteger(value) : secondsToMs(value) >= 1);
  if (!inRange) return refused;
  const warning =
    spec.cap !== undefined && value > spec.cap.above
      ? `${options.path}: ${value} s is above the ${spec.cap.above} s cap of ${spec.cap.of}; ${spec.cap.effect}`
      : undefined;
  return { ok: true, value, warning };
}

/** Digits (from any source) are bytes; any other string is a size with a unit. */
function checkSize(spec: ValueSpec, raw: unknown): CheckedValue {
  const problem = (extra = ""): CheckedValue => ({
    ok: false,
    problem: `must be ${spec.rule}, got ${describeValue(raw)}${extra}`,
  });
  const digits = typeof raw === "string" && /^\s*\d+\s*$/.test(raw);
  const value = typeof raw === "number" ? raw : digits ? Number(raw) : undefined;
  if (value !== undefined) {
    return Number.isSafeInteger(value) && value >= spec.min && value <= spec.max
      ? { ok: true, value, warning: undefined }
      : problem();
  }
  if (typeof raw !== "string") return problem();
  try {
    return { ok: true, value: parseMemorySize(raw), warning: undefined };
  } catch (error) {
    return problem(` (${error instanceof Error ? error.message : String(error)})`);
  }
}

/** A checked value in code's unit: milliseconds for durations. */
export function inCodeUnit(spec: ValueSpec, value: number): number {
  return spec.kind === "duration" ? secondsToMs(value) : value;
}

/** The default of `spec` in code's unit; undefined when it comes from elsewhere. */
export function defaultInCodeUnit(spec: ValueSpec): number | undefined {
  return spec.default === undefined ? undefined : inCodeUnit(spec, spec.default);
}
