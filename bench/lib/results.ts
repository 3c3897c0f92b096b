/**
 * The figures of one harness run: one row per measured quantity, one cell per tool, plus the
 * target the issues set for atoll-deploy (as a ratio to the floor, or an absolute bound).
 */
import type { ToolName } from "../tools/tool.ts";

export type Unit = "ms" | "bytes" | "calls/s" | "count" | "percent" | "text";

/** A measured number, a text (crash-loop outcome, "n/a"), or an error message. */
export type Cell = number | string | { readonly error: string };

export type Target =
  /** atoll ≤ factor × floor */
  | { readonly kind: "ratio-to-floor"; readonly factor: number }
  /** atoll ≤ bound (in the row's unit) */
  | { readonly kind: "at-most"; readonly bound: number }
  /** atoll ≥ bound (in the row's unit) */
  | { readonly kind: "at-least"; readonly bound: number };

export interface Row {
  /** Scenario name as selected on the command line (`cold`, `crash`...). */
  readonly scenario: string;
  /** What the row measures, human readable. */
  readonly metric: string;
  readonly unit: Unit;
  readonly values: Partial<Record<ToolName, Cell>>;
  readonly target?: Target;
  /** Shown under the table (how the figure was taken). */
  readonly note?: string;
  /** Counts that are behaviour, not speed: no ratio columns. */
  readonly noRatios?: boolean;
}

export function isNumber(cell: Cell | undefined): cell is number {
  return typeof cell === "number" && Number.isFinite(cell);
}

export function isError(cell: Cell | undefined): cell is { readonly error: string } {
  return typeof cell === "object" && cell !== null;
}

export function formatValue(cell: Cell | undefined, unit: Unit): string {
  if (cell === undefined) return "—";
  if (isError(cell)) return "ERROR";
  if (typeof cell === "string") return cell;
  if (!Number.isFinite(cell)) return "—";
  switch (unit) {
    case "ms":
      if (cell >= 10_000) return `${(cell / 1000).toFixed(1)} s`;
      if (cell >= 1_000) return `${(cell / 1000).toFixed(2)} s`;
      if (cell >= 100) return `${cell.toFixed(0)} ms`;
      if (cell >= 10) return `${cell.toFixed(1)} ms`;
      return `${cell.toFixed(2)} ms`;
    case "bytes":
      return `${(cell / 1024 / 1024).toFixed(1)} MiB`;
    case "calls/s":
      return `${Math.round(cell).toLocaleString("en-US")}/s`;
    case "count":
      return String(Math.round(cell));
    case "percent":
      return `${cell.toFixed(1)}%`;
    case "text":
      return String(cell);
  }
}

/** a ÷ b as "1.23×", or "—" when either is not a number. */
export function ratio(a: Cell | undefined, b: Cell | undefined): string {
  if (!isNumber(a) || !isNumber(b) || b === 0) return "—";
  const r = a / b;
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

/** The target in words and whether atoll met it (undefined when it could not be judged). */
export function judgeTarget(row: Row): { text: string; met: boolean | undefined; detail: string } {
  const target = row.target;
  if (target === undefined) return { text: "", met: undefined, detail: "" };
  const atoll = row.values.atoll;
  switch (target.kind) {
    case "ratio-to-floor": {
      const floor = row.values.floor;
      const text = `≤ ${target.factor}× floor`;
      if (!isNumber(atoll) || !isNumber(floor))
        return { text, met: undefined, detail: "not measured" };
      const r = atoll / floor;
      const met = r <= target.factor;
      return {
        text,
        met,
        detail: met
          ? `met (${r.toFixed(2)}×)`
          : `missed: ${r.toFixed(2)}× (${(((r - target.factor) / target.factor) * 100).toFixed(0)}% over)`,
      };
    }
    case "at-most": {
      const text = `≤ ${formatValue(target.bound, row.unit)}`;
      if (!isNumber(atoll)) return { text, met: undefined, detail: "not measured" };
      const met = atoll <= target.bound;
      return {
        text,
        met,
        detail: met
          ? "met"
          : `missed by ${(((atoll - target.bound) / target.bound) * 100).toFixed(0)}%`,
      };
    }
    case "at-least": {
      const text = `≥ ${formatValue(target.bound, row.unit)}`;
      if (!isNumber(atoll)) return { text, met: undefined, detail: "not measured" };
      const met = atoll >= target.bound;
      return {
        text,
        met,
        detail: met ? "met" : `missed: ${((atoll / target.bound) * 100).toFixed(0)}% of the bound`,
      };
    }
  }
}
