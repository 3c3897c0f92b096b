/**
 * Typed readers for the keys of an agent definition. Each reader records a problem (key path
 * plus what is wrong, with the value it got) instead of throwing, so one pass reports every
 * problem of a file at once.
 */
import {
  closestKey,
  describeValue,
  escapeControlChars,
  isTable,
  ownValue,
  type Table,
} from "./config-values.ts";
import { checkValue, inCodeUnit, type ValueSpec } from "./value-schema.ts";

/** One validation problem: `key` is a dotted path such as `deployment.port`. */
export interface Problem {
  readonly key: string;
  readonly problem: string;
}

/** Collects problems and warnings while reading one definition. */
export class FieldReader {
  readonly problems: Problem[] = [];
  readonly warnings: string[] = [];
  /** "table" for TOML, "object" for JSON: messages use the file's own word. */
  readonly #tableWord: string;

  constructor(syntax: "toml" | "json") {
    this.#tableWord = syntax === "json" ? "an object" : "a table";
  }

  fail(key: string, problem: string): undefined {
    this.problems.push({ key, problem });
    return undefined;
  }

  warn(message: string): void {
    this.warnings.push(escapeControlChars(message));
  }

  /** A sub-table; absent gives `{}`, anything but a table is a problem (and gives `{}`). */
  section(root: Table, key: string, path = key): Table {
    const value = ownValue(root, key);
    if (value === undefined) return {};
    if (isTable(value)) return value;
    this.fail(path, `must be ${this.#tableWord}, got ${describeValue(value)}`);
    return {};
  }

  /** Warns about keys of `table` outside `known`, suggesting the closest known key. */
  warnUnknownKeys(table: Table, prefix: string, known: readonly string[]): void {
    for (const key of Object.keys(table)) {
      if (known.includes(key)) continue;
      const guess = closestKey(key, known);
      this.warn(
        `unknown key ${prefix}${key}${guess === undefined ? "" : ` (did you mean ${prefix}${guess}?)`}`,
      );
    }
  }

  string(table: Table, key: string, path: string): string | undefined {
    const value = ownValue(table, key);
    if (value === undefined || typeof value === "string") return value;
    return this.fail(path, `must be a string, got ${describeValue(value)}`);
  }

  boolean(table: Table, key: string, path: string): boolean | undefined {
    const value = ownValue(table, key);
    if (value === undefined || typeof value === "boolean") return value;
    return this.fail(path, `must be true or false, got ${describeValue(value)}`);
  }

  /**
   * A numeric value checked against its row of the value schema: in code's unit (milliseconds
   * for durations). A value beyond the row's cap is kept, with a warning.
   */
  value(table: Table, key: string, path: string, spec: ValueSpec): number | undefined {
    const raw = ownValue(table, key);
    if (raw === undefined) return undefined;
    const checked = checkValue(spec, raw, { fromText: false, path });
    if (!checked.ok) return this.fail(path, checked.problem);
    if (checked.warning !== undefined) this.warn(checked.warning);
    return inCodeUnit(spec, checked.value);
  }

  /** An array of strings; `nonEmpty` also refuses `[]`. No string may contain NUL. */
  stringList(
    table: Table,
    key: string,
    path: string,
    nonEmpty = false,
  ): readonly string[] | undefined {
    const value = ownValue(table, key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) {
      return this.fail(path, `must be a list of strings, got ${describeValue(value)}`);
    }
    if (nonEmpty && value.length === 0) return this.fail(path, "must not be empty");
    let ok = true;
    value.forEach((item: unknown, index) => {
      if (typeof item !== "string") {
        this.fail(`${path}[${index}]`, `must be a string, got ${describeValue(item)}`);
        ok = false;
      } else if (item.includes("\0")) {
        this.fail(`${path}[${index}]`, "must not contain a NUL character");
        ok = false;
      }
    });
    return ok ? Object.freeze([...(value as string[])]) : undefined;
  }

  /** A table of strings usable as environment variables (names without `=` or NUL). */
  stringTable(
    table: Table,
    key: string,
    path: string,
  ): Readonly<Record<string, string>> | undefined {
    const value = ownValue(table, key);
    if (value === undefined) return undefined;
    if (!isTable(value)) {
      return this.fail(path, `must be ${this.#tableWord} of strings, got ${describeValue(value)}`);
    }
    const entries: [string, string][] = [];
    let ok = true;
    for (const [name, item] of Object.entries(value)) {
      const itemPath = `${path}.${name}`;
      if (name === "" || name.includes("=") || name.includes("\0")) {
        this.fail(itemPath, "is not a valid environment variable name (empty, or holds = or NUL)");
        ok = false;
      } else if (typeof item !== "string") {
        this.fail(itemPath, `must be a string, got ${describeValue(item)}`);
        ok = false;
      } else if (item.includes("\0")) {
        this.fail(itemPath, "must not contain a NUL character");
        ok = false;
      } else {
        entries.push([name, item]);
      }
    }
    // Object.fromEntries defines own properties, so a `__proto__` key stays a plain key.
    return ok ? Object.freeze(Object.fromEntries(entries)) : undefined;
  }
}
