/**
 * Reading arguments against an option table (`command-options.ts`) with node:util's parseArgs,
 * and the value checks every command shares. Problems are thrown as `UsageError`, which the
 * parsers turn into a `usage-error` command line.
 */
import { parseArgs } from "node:util";
import type { OptionSpec } from "./command-options.ts";
import type { CommandLine } from "./command-spec.ts";

/** A problem with what was typed; its message is shown above the usage text. */
export class UsageError extends Error {}

export type Values = Record<string, string | boolean | undefined>;

/** `args` parsed against `options`, strictly (an unknown option is a UsageError). */
export function parse(
  args: readonly string[],
  options: Readonly<Record<string, OptionSpec>>,
): { values: Values; positionals: string[] } {
  const config: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const [name, spec] of Object.entries(options)) {
    config[name] =
      spec.short === undefined ? { type: spec.type } : { type: spec.type, short: spec.short };
  }
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: config,
      strict: true,
      allowPositionals: true,
    });
    return { values: values as Values, positionals };
  } catch (error) {
    // parseArgs explains unknown options and missing values well; keep its first sentence.
    const message = error instanceof Error ? error.message : String(error);
    const first = (message.split("\n")[0] ?? message).split(". ")[0] ?? message;
    throw new UsageError(first.replace(/\.$/, ""));
  }
}

export function stringValue(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === "string" ? value : undefined;
}

/** `--name SECONDS` in ms; a UsageError unless a positive number. */
export function seconds(values: Values, name: string): number | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value <= 0) {
    throw new UsageError(`--${name} must be a positive number of seconds, not "${text}"`);
  }
  return Math.round(value * 1000);
}

/** `flag N` as a whole number; a UsageError otherwise. */
export function count(values: Values, name: string, flag: string): number | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text)) throw new UsageError(`${flag} must be a whole number, not "${text}"`);
  return Number(text);
}

/** An environment variable, an empty one as unset. */
export function nonEmpty(env: Readonly<Record<string, string | undefined>>, key: string) {
  const value = env[key];
  return value === undefined || value === "" ? undefined : value;
}

/** The `usage-error` command line of `message`, to be shown above `usage`. */
export function usageError(message: string, usage: string): CommandLine {
  return { kind: "usage-error", message, usage };
}
