import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/core/clock.ts";
import { createJsonLogger, isLogLevel, type LogSink } from "../../src/core/logger.ts";

function sink(): LogSink & { lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  return {
    write: (chunk: string) => chunks.push(chunk),
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

describe("JSON-lines logger", () => {
  it("writes one JSON object per line with time, level, message and fields", () => {
    const out = sink();
    const logger = createJsonLogger({
      sink: out,
      clock: new ManualClock(Date.UTC(2025, 0, 2, 3, 4, 5)),
      fields: { component: "rpc" },
    });
    logger.info("agent started", { agent: "alpha", port: 8100 });
    expect(out.lines()).toEqual([
      {
        time: "2025-01-02T03:04:05.000Z",
        level: "info",
        msg: "agent started",
        component: "rpc",
        agent: "alpha",
        port: 8100,
      },
    ]);
  });

  it("drops lines below the configured level", () => {
    const out = sink();
    const logger = createJsonLogger({ sink: out, level: "warn" });
    logger.debug("d");
    logger.info("i");
    logger.warn("w");
    logger.error("e");
    expect(out.lines().map((line) => line.level)).toEqual(["warn", "error"]);
  });

  it("defaults to info", () => {
    const out = sink();
    const logger = createJsonLogger({ sink: out });
    logger.debug("hidden");
    logger.info("shown");
    expect(out.lines().map((line) => line.msg)).toEqual(["shown"]);
  });

  it("makes bigints, errors and cycles safe instead of throwing", () => {
    const out = sink();
    const logger = createJsonLogger({ sink: out });
    const cyclic: Record<string, unknown> = { name: "loop" };
    cyclic.self = cyclic;
    const shared = { n: 1 };
    const error = new Error("boom", { cause: new Error("root") });
    logger.error("failed", { revision: 12n, error, cyclic, a: shared, b: shared });
    const [line] = out.lines();
    expect(line?.revision).toBe("12");
    expect(line?.error).toMatchObject({
      name: "Error",
      message: "boom",
      cause: { message: "root" },
    });
    expect(line?.cyclic).toEqual({ name: "loop", self: "[Circular]" });
    // An object referenced twice is not a cycle.
    expect(line?.a).toEqual({ n: 1 });
    expect(line?.b).toEqual({ n: 1 });
  });

  it("still writes a line when a field cannot be serialized", () => {
    const out = sink();
    const logger = createJsonLogger({ sink: out });
    logger.warn("odd", {
      bad: {
        toJSON() {
          throw new Error("no");
        },
      },
    });
    expect(out.lines()[0]).toMatchObject({ level: "warn", msg: "odd" });
    expect(String(out.lines()[0]?.logError)).toContain("no");
  });

  it("recognises level names", () => {
    expect(isLogLevel("debug")).toBe(true);
    expect(isLogLevel("verbose")).toBe(false);
  });
});
