import { readFile } from "node:fs/promises";
import os from "node:os";
import { describe, expect, it } from "vitest";
import { ConfigError, isConfigError } from "../../src/config/config-error.ts";
import {
  closestKey,
  describeValue,
  escapeControlChars,
  osProblem,
} from "../../src/config/config-values.ts";

describe("escapeControlChars", () => {
  it("escapes control characters so a message stays on one line and inert", () => {
    expect(escapeControlChars("a\nb\tc\r\u001b[31m\u007f\u0085\u2028")).toBe(
      "a\\nb\\tc\\r\\u001b[31m\\u007f\\u0085\\u2028",
    );
    expect(escapeControlChars("plain ünïcode")).toBe("plain ünïcode");
  });
});

describe("describeValue", () => {
  it("quotes strings, cuts long ones and names other kinds", () => {
    expect(describeValue("abc")).toBe('"abc"');
    expect(describeValue("x".repeat(100))).toBe(`"${"x".repeat(80)}…"`);
    expect(describeValue("a\nb")).toBe('"a\\nb"');
    expect(describeValue(1.5)).toBe("1.5");
    expect(describeValue(false)).toBe("false");
    expect(describeValue(null)).toBe("null");
    expect(describeValue([1])).toBe("an array");
    expect(describeValue({ a: 1 })).toBe("an object");
    expect(describeValue(new Date("2024-01-02T03:04:05Z"))).toBe("2024-01-02T03:04:05.000Z");
  });
});

describe("closestKey", () => {
  it("suggests a key within two edits and nothing further away", () => {
    expect(closestKey("prot", ["port", "command"])).toBe("port");
    expect(closestKey("comand", ["port", "command"])).toBe("command");
    expect(closestKey("banana", ["port", "command"])).toBeUndefined();
  });
});

describe("osProblem", () => {
  it("describes a system error by its message and code", async () => {
    const error = await readFile(os.tmpdir()).catch((e: unknown) => e);
    expect(osProblem(error)).toBe("illegal operation on a directory (EISDIR)");
  });

  it("falls back to the message of other errors", () => {
    expect(osProblem(new Error("boom"))).toBe("boom");
    expect(osProblem("text")).toBe("text");
  });
});

describe("ConfigError", () => {
  it("carries the file and key it names", () => {
    const error = new ConfigError("/f: deployment.x: bad", { file: "/f", key: "deployment.x" });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("ConfigError");
    expect(error.file).toBe("/f");
    expect(error.key).toBe("deployment.x");
    expect(isConfigError(error)).toBe(true);
    expect(isConfigError(new Error("x"))).toBe(false);
  });
});
