import { describe, expect, it } from "vitest";
import { EntryCatalog, entrySegments } from "../../src/packages/archive-entries.ts";

const limits = { maxPackageBytes: 1024, maxUnpackedBytes: 100, maxEntries: 5 };

function catalog(...names: string[]): EntryCatalog {
  const entries = new EntryCatalog(limits);
  for (const name of names) {
    entries.add({ name, kind: name.endsWith("/") ? "directory" : "file", size: 1, mode: 0o644 });
  }
  return entries;
}

describe("entrySegments", () => {
  it("drops . and empty segments", () => {
    expect(entrySegments("./greeter//lib/./main.py")).toEqual(["greeter", "lib", "main.py"]);
    expect(entrySegments("./")).toEqual([]);
  });

  it("refuses absolute paths, drive letters, .., backslashes and control characters", () => {
    expect(() => entrySegments("/etc/passwd")).toThrow(/absolute path/);
    expect(() => entrySegments("C:/Windows")).toThrow(/absolute path/);
    expect(() => entrySegments("a/../../b")).toThrow(/leaves the package/);
    expect(() => entrySegments("a\\b")).toThrow(/backslash/);
    expect(() => entrySegments("a\nb")).toThrow(/control character/);
    expect(() => entrySegments(`${"x".repeat(256)}`)).toThrow(/longer than 255 bytes/);
  });
});

describe("EntryCatalog", () => {
  it("takes a definition at the root over one in a folder, and names the folder otherwise", () => {
    expect(catalog("agent.toml", "sub/agent.json").layout()).toEqual({
      root: [],
      definitionFile: "agent.toml",
      folderName: undefined,
    });
    expect(catalog("greeter/", "greeter/agent.json").layout()).toEqual({
      root: ["greeter"],
      definitionFile: "agent.json",
      folderName: "greeter",
    });
    expect(catalog("greeter/agent.toml", "greeter/agent.json").layout().definitionFile).toBe(
      "agent.toml",
    );
  });

  it("skips macOS's __MACOSX folder, so a Finder zip still has one top-level folder", () => {
    expect(catalog("greeter/agent.toml", "__MACOSX/greeter/._agent.toml").layout().root).toEqual([
      "greeter",
    ]);
  });

  it("counts every entry and the declared bytes against the limits", () => {
    expect(() => catalog("a", "b", "c", "d", "e", "f")).toThrow(/more than 5 entries/);
    const big = new EntryCatalog(limits);
    big.add({ name: "a", kind: "file", size: 60, mode: 0 });
    expect(() => big.add({ name: "b", kind: "file", size: 41, mode: 0 })).toThrow(
      /unpacks to more than 100 bytes/,
    );
  });

  it("keeps only the executable bit of a file's mode", () => {
    const entries = new EntryCatalog(limits);
    expect(entries.add({ name: "run", kind: "file", size: 0, mode: 0o4755 })?.executable).toBe(
      true,
    );
    expect(entries.add({ name: "data", kind: "file", size: 0, mode: 0o6644 })?.executable).toBe(
      false,
    );
  });
});
