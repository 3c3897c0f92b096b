import { afterEach, describe, expect, it, vi } from "vitest";
import { formatBytes } from "../../src/cli/format.ts";
import { startProgressBar } from "../../src/cli/progress.ts";

function sink() {
  const writes: string[] = [];
  return { writes, write: (text: string) => writes.push(text) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("startProgressBar", () => {
  it("draws the bar, the percentage and the amounts, and erases itself on stop", () => {
    vi.useFakeTimers();
    const out = sink();
    const bar = startProgressBar(out, "Uploading greeter", 4096, true, formatBytes);
    bar.update(1024);
    vi.advanceTimersByTime(80);
    expect(out.writes[1]).toBe(
      `\r\u001b[2KUploading greeter [${"#".repeat(6)}${"-".repeat(18)}]  25% 1.0 KiB/4.0 KiB`,
    );
    // Nothing new to draw: no redraw.
    vi.advanceTimersByTime(160);
    expect(out.writes).toHaveLength(2);
    bar.stop();
    bar.stop();
    expect(out.writes[0]).toBe(`\r\u001b[2KUploading greeter [${"-".repeat(24)}]   0% 0 B/4.0 KiB`);
    expect(out.writes.at(-1)).toBe("\r\u001b[2K");
    expect(out.writes.filter((w) => w === "\r\u001b[2K")).toHaveLength(1);
  });

  it("writes nothing when not drawing (stderr is not a terminal)", () => {
    const out = sink();
    const bar = startProgressBar(out, "Uploading", 10, false, String);
    bar.update(5);
    bar.stop();
    expect(out.writes).toEqual([]);
  });
});
