/**
 * A one-line progress indicator (spinner, text, elapsed seconds) redrawn in place on a TTY
 * while a command waits for the server. Only ever drawn on a terminal: on a pipe or file it
 * writes nothing, so captured stderr holds only real messages.
 */
import type { TextSink } from "./context.ts";

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const FRAME_INTERVAL_MS = 80;

export interface Progress {
  /** Erases the indicator; idempotent. */
  stop(): void;
}

const NO_PROGRESS: Progress = { stop: () => {} };

/**
 * Starts drawing `text` with a spinner on `stream` when `enabled` (the caller decides: stderr
 * is a TTY and output is for humans). `now` is the wall clock in milliseconds.
 */
export function startProgress(
  stream: TextSink,
  text: string,
  enabled: boolean,
  now: () => number = Date.now,
): Progress {
  if (!enabled) return NO_PROGRESS;
  const startedMs = now();
  let frame = 0;
  const draw = (): void => {
    const elapsed = Math.floor((now() - startedMs) / 1000);
    const glyph = FRAMES[frame % FRAMES.length] ?? "";
    frame += 1;
    // \r returns to column 0; \x1b[2K clears the line before redrawing.
    stream.write(`\r\u001b[2K${glyph} ${text}${elapsed > 0 ? ` (${elapsed}s)` : ""}`);
  };
  draw();
  const timer = setInterval(draw, FRAME_INTERVAL_MS);
  // The spinner alone must never keep the process alive.
  timer.unref();
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      stream.write("\r\u001b[2K");
    },
  };
}

/** A progress bar of a known total; `update` sets the amount done. */
export interface ProgressBar extends Progress {
  update(done: number): void;
}

const NO_BAR: ProgressBar = { stop: () => {}, update: () => {} };
const BAR_WIDTH = 24;

/**
 * Starts drawing `text [#####-----] 45% 4.5 MiB/10.0 MiB` on `stream` when `enabled`, redrawn at
 * most every 80 ms with the latest `update`. Like the spinner, never drawn off a terminal.
 * `format` renders an amount (bytes by default, as binary units).
 */
export function startProgressBar(
  stream: TextSink,
  text: string,
  total: number,
  enabled: boolean,
  format: (amount: number) => string,
): ProgressBar {
  if (!enabled) return NO_BAR;
  let done = 0;
  let drawn = -1;
  const draw = (): void => {
    if (done === drawn) return;
    drawn = done;
    const fraction = total <= 0 ? 1 : Math.min(1, done / total);
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = `${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}`;
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    stream.write(`\r\u001b[2K${text} [${bar}] ${percent} ${format(done)}/${format(total)}`);
  };
  draw();
  const timer = setInterval(draw, FRAME_INTERVAL_MS);
  timer.unref();
  let stopped = false;
  return {
    update(amount) {
      done = amount;
    },
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      stream.write("\r\u001b[2K");
    },
  };
}
