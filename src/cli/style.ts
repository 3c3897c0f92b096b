/**
 * Terminal styling: plain ANSI SGR codes, used only when the stream is a TTY, `NO_COLOR` is
 * unset (or empty), `TERM` is not `dumb` and `--no-color` was not given (https://no-color.org).
 */

/** A string decorator; the identity when colour is off. */
export type Paint = (text: string) => string;

export interface Style {
  readonly enabled: boolean;
  readonly green: Paint;
  readonly red: Paint;
  readonly yellow: Paint;
  readonly cyan: Paint;
  readonly dim: Paint;
  readonly bold: Paint;
}

function sgr(open: number, close: number): Paint {
  return (text) => (text === "" ? text : `\u001b[${open}m${text}\u001b[${close}m`);
}

const identity: Paint = (text) => text;

/** Styles that add ANSI codes. */
export const COLOR_STYLE: Style = {
  enabled: true,
  green: sgr(32, 39),
  red: sgr(31, 39),
  yellow: sgr(33, 39),
  cyan: sgr(36, 39),
  dim: sgr(2, 22),
  bold: sgr(1, 22),
};

/** Styles that leave text unchanged. */
export const PLAIN_STYLE: Style = {
  enabled: false,
  green: identity,
  red: identity,
  yellow: identity,
  cyan: identity,
  dim: identity,
  bold: identity,
};

/**
 * True when output to `stream` may be coloured: it is a TTY, `NO_COLOR` is unset or empty,
 * `TERM` is not `dumb`, and colour was not switched off on the command line.
 */
export function colorEnabled(
  stream: { readonly isTTY?: boolean },
  env: Readonly<Record<string, string | undefined>>,
  noColorFlag = false,
): boolean {
  if (noColorFlag) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.TERM === "dumb") return false;
  return stream.isTTY === true;
}

/** Removes ANSI SGR sequences (for width computations and tests). */
export function stripAnsi(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching the ESC of SGR sequences
  return text.replace(/\u001b\[[0-9;]*m/g, "");
}
