/**
 * Small helpers shared by the definition and server-config parsers: how values are quoted in
 * messages, and the limits on durations.
 */

import { getSystemErrorMap } from "node:util";

/**
 * Longest duration accepted anywhere, in seconds: Node timers fire at once (with a warning) for
 * delays above 2^31-1 ms, so a larger value would silently become "immediately".
 */
export const MAX_DURATION_SECONDS = 2_147_483;

/** Seconds (possibly fractional) to whole milliseconds. */
export function secondsToMs(seconds: number): number {
  return Math.round(seconds * 1000);
}

/**
 * Replaces control characters (C0, DEL, C1, U+2028/2029) by escapes so that a message built from
 * hostile file or directory names stays on one line and cannot drive a terminal.
 */
export function escapeControlChars(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (char) => {
    if (char === "\n") return "\\n";
    if (char === "\r") return "\\r";
    if (char === "\t") return "\\t";
    return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

/** Strings longer than this are cut in messages. */
const MAX_QUOTED_LENGTH = 80;

/** A value as shown after "got" in a message: strings quoted (and cut), other kinds named. */
export function describeValue(value: unknown): string {
  if (typeof value === "string") {
    const cut = value.length > MAX_QUOTED_LENGTH ? `${value.slice(0, MAX_QUOTED_LENGTH)}…` : value;
    return JSON.stringify(cut);
  }
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") {
    return String(value);
  }
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Date) return value.toISOString();
  // smol-toml's TomlDate (a Date subclass) is covered above; what remains is a table or object.
  return "an object";
}

/** A plain object read from TOML or JSON. */
export type Table = Record<string, unknown>;

/** True for a TOML table / JSON object (not an array, date or null). */
export function isTable(value: unknown): value is Table {
  return (
    typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)
  );
}

/** Own property only: a key such as `constructor` must never resolve through the prototype. */
export function ownValue(table: Table, key: string): unknown {
  return Object.hasOwn(table, key) ? table[key] : undefined;
}

/** The closest of `candidates` to `key` (edit distance ≤ 2), to suggest a fix for a typo. */
export function closestKey(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const distance = editDistance(key, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** "permission denied (EACCES)" from a Node system error; its message otherwise. */
export function osProblem(error: unknown): string {
  const { code, errno } = error as NodeJS.ErrnoException;
  if (typeof errno === "number" && typeof code === "string") {
    // getSystemErrorMap (Node 16+) rather than getSystemErrorMessage (22.12+): the package
    // runs on every Node 22 (SPEC §10).
    return `${getSystemErrorMap().get(errno)?.[1] ?? code} (${code})`;
  }
  return error instanceof Error ? error.message : String(error);
}
