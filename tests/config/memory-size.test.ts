import { describe, expect, it } from "vitest";
import { formatMemorySize, parseMemorySize } from "../../src/config/memory-size.ts";

describe("parseMemorySize", () => {
  it.each([
    ["512MB", 512e6],
    ["4GB", 4e9],
    ["100KB", 100e3],
    ["1TB", 1e12],
    ["1024B", 1024],
    ["1.5GiB", 1.5 * 2 ** 30],
    ["100KiB", 100 * 1024],
    ["256MiB", 256 * 2 ** 20],
    ["1TiB", 2 ** 40],
    ["2g", 2 * 2 ** 30],
    ["512m", 512 * 2 ** 20],
    ["64k", 64 * 1024],
    ["512Mi", 512 * 2 ** 20],
    ["1Gi", 2 ** 30],
    ["512 MB", 512e6],
    [" 1gb ", 1e9],
    ["0.5GB", 5e8],
    [".5GB", 5e8],
  ])("reads %j as %d bytes", (text, bytes) => {
    expect(parseMemorySize(text)).toBe(bytes);
  });

  it.each(["512", "1.5", "", "  ", "MB", "abc", "512XB", "-1GB", "1,5GB", "1e3MB", "5 G B"])(
    "refuses %j with Invalid memory format",
    (text) => {
      expect(() => parseMemorySize(text)).toThrow(/Invalid memory format/);
    },
  );

  it("refuses a size of zero", () => {
    expect(() => parseMemorySize("0MB")).toThrow(/above 0/);
  });

  it("refuses a size beyond the safe integer range", () => {
    expect(() => parseMemorySize("99999999999TiB")).toThrow(/too large/);
  });

  it("rounds fractional bytes to a whole byte", () => {
    expect(parseMemorySize("1.0001KB")).toBe(1000);
  });
});

describe("formatMemorySize", () => {
  it("formats bytes with binary units", () => {
    expect(formatMemorySize(100)).toBe("100 B");
    expect(formatMemorySize(512 * 2 ** 20)).toBe("512 MiB");
    expect(formatMemorySize(1.5 * 2 ** 30)).toBe("1.5 GiB");
  });
});
