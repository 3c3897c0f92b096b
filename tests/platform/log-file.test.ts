import { execFileSync } from "node:child_process";
import { appendFile, rm, stat, symlink, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BoundedLog } from "../../src/platform/keeper/bounded-log.ts";
import { agentLogPath, readLogTail, tailLines } from "../../src/platform/log-file.ts";
import { followLog, SKIPPED_MARKER } from "../../src/platform/log-follow.ts";
import { TempDirs } from "./helpers.ts";
import { checkSequence } from "./log-check.ts";

const dirs = new TempDirs();
afterEach(() => dirs.cleanup());

/** `count` numbered lines from `from` in the flood fixture's format (100 bytes each). */
function numbered(from: number, count: number): Buffer {
  let text = "";
  for (let i = from; i < from + count; i++)
    text += `${String(i).padStart(12, "0")} ${"x".repeat(86)}\n`;
  return Buffer.from(text);
}

/** Pulls batches from a follower until `done` says enough. */
async function collect(
  iterator: AsyncGenerator<string[], void, undefined>,
  done: (lines: string[]) => boolean,
): Promise<string[]> {
  const lines: string[] = [];
  while (!done(lines)) {
    const next = await iterator.next();
    if (next.done === true) break;
    lines.push(...next.value);
  }
  return lines;
}

describe("readLogTail", () => {
  it("returns the last complete lines, leaving out an unfinished one", async () => {
    const dir = await dirs.make();
    const log = agentLogPath(dir, "a");
    expect(log).toBe(join(dir, "a.log"));
    expect(await tailLines(log, 5)).toEqual([]);
    expect((await readLogTail(log, 5)).position).toBeUndefined();
    await writeFile(log, "one\r\ntwo\nthree\nfour\nunfinished");
    expect(await tailLines(log, 2)).toEqual(["three", "four"]);
    expect(await tailLines(log, 10)).toEqual(["one", "two", "three", "four"]);
    const tail = await readLogTail(log, 1);
    const { dev, ino } = await stat(log);
    expect(tail).toEqual({
      lines: ["four"],
      position: { dev, ino, offset: "one\r\ntwo\nthree\nfour\n".length },
    });
  });

  it("reads a large file from the end and caps long lines", async () => {
    const dir = await dirs.make();
    const log = join(dir, "big.log");
    const lines = Array.from({ length: 50_000 }, (_, index) => `line ${index}`);
    await writeFile(log, `${lines.join("\n")}\n`);
    expect(await tailLines(log, 3)).toEqual(["line 49997", "line 49998", "line 49999"]);
    await appendFile(log, `${"z".repeat(100_000)}\nlast\n`);
    const tail = await tailLines(log, 2, { maxLineBytes: 1000 });
    expect(tail).toEqual(["z".repeat(1000), "last"]);
  });

  it("goes on into rotated files for more lines, and scans at most maxScanBytes", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const writer = new BoundedLog(logPath, { maxBytes: 1000, keep: 5 });
    writer.write(numbered(0, 45)); // 4 full files of 10 lines and 5 lines in the live one
    writer.close();
    const tail = await tailLines(logPath, 25);
    expect(checkSequence(tail)).toMatchObject({ first: 20, last: 44, gaps: [], repeats: 0 });
    expect(tail).toHaveLength(25);
    // 8 lines of 100 bytes fit in 800 bytes, the ninth's tail end would be cut: dropped.
    const bounded = await tailLines(logPath, 25, { maxScanBytes: 850 });
    expect(checkSequence(bounded)).toMatchObject({ first: 37, last: 44, lines: 8 });
  });
});

describe("followLog", () => {
  it("yields appended lines and restarts from the beginning after a truncation by hand", async () => {
    const dir = await dirs.make();
    const log = join(dir, "a.log");
    await writeFile(log, "old line\n");
    const controller = new AbortController();
    const iterator = followLog(log, { signal: controller.signal, pollIntervalMs: 50 });

    const first = iterator.next();
    await appendFile(log, "new 1\nnew");
    await appendFile(log, " 2\n");
    const batches: string[] = [];
    batches.push(...((await first).value ?? []));
    while (batches.length < 2) batches.push(...((await iterator.next()).value ?? []));
    expect(batches).toEqual(["new 1", "new 2"]);

    await truncate(log, 0);
    const afterTruncation = iterator.next();
    await appendFile(log, "after truncation\n");
    expect((await afterTruncation).value).toEqual(["after truncation"]);

    const ending = iterator.next();
    controller.abort();
    expect((await ending).done).toBe(true);
  });

  it("waits for a missing file and follows it from its start", async () => {
    const dir = await dirs.make();
    const log = join(dir, "later.log");
    const controller = new AbortController();
    const iterator = followLog(log, {
      signal: controller.signal,
      pollIntervalMs: 20,
      from: "start",
    });
    const next = iterator.next();
    await writeFile(log, "hello\n");
    expect((await next).value).toEqual(["hello"]);
    await iterator.return();
    controller.abort();
  });

  it("follows the log across many rotations with no gap and no repeat, joining split lines", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    // Lines of 100 bytes in files of 1050: every rotation splits a line across two files.
    const writer = new BoundedLog(logPath, { maxBytes: 1050, keep: 3 });
    writer.write(numbered(0, 5));
    const tail = await readLogTail(logPath, 2);
    const controller = new AbortController();
    const iterator = followLog(logPath, {
      signal: controller.signal,
      from: tail.position ?? "start",
      pollIntervalMs: 20,
    });
    const collected: string[] = [...tail.lines];
    let next = 5;
    // Bursts of one or two rotations while the follower waits between batches.
    while (next < 300) {
      writer.write(numbered(next, 17));
      next += 17;
      const last = next - 1;
      collected.push(
        ...(await collect(iterator, (l) => checkSequence([...collected, ...l]).last === last)),
      );
    }
    controller.abort();
    await iterator.return();
    writer.close();
    expect(writer.stats.rotations).toBeGreaterThan(20);
    expect(checkSequence(collected)).toEqual({
      first: 3,
      last: next - 1,
      lines: next - 3,
      gaps: [],
      repeats: 0,
      other: [],
      markers: [],
    });
  });

  it("reads the files it fell behind on, and marks where it lost track of the rotations", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const writer = new BoundedLog(logPath, { maxBytes: 1000, keep: 2 });
    writer.write(numbered(0, 3));
    const controller = new AbortController();
    const iterator = followLog(logPath, {
      signal: controller.signal,
      from: "start",
      pollIntervalMs: 20,
    });
    const lines = await collect(iterator, (l) => l.length >= 3);
    // Two rotations while the follower waits: its file is `.2` now, still there; it notes and
    // holds the file after it (lines 10-19).
    writer.write(numbered(3, 22));
    lines.push(...(await collect(iterator, (l) => checkSequence(l).last >= 9)));
    expect(checkSequence(lines)).toMatchObject({ first: 0, last: 9, gaps: [] });
    // Three more at once (no event loop turn in between, so nothing can be noted): the file
    // after the held one (lines 20-29) is deleted unseen.
    writer.write(numbered(25, 30));
    lines.push(...(await collect(iterator, (l) => checkSequence(l).last === 54)));
    controller.abort();
    await iterator.return();
    writer.close();
    expect(checkSequence(lines)).toMatchObject({
      first: 0,
      last: 54,
      gaps: [{ after: 19, missing: 10 }],
      repeats: 0,
      markers: [SKIPPED_MARKER],
    });
    expect(lines[lines.indexOf(SKIPPED_MARKER) + 1]).toMatch(/^000000000030 /);
  });

  it("cuts an over-long line and skips the rest of it, holding no more than the cap", async () => {
    const dir = await dirs.make();
    const log = join(dir, "a.log");
    await writeFile(log, "");
    const controller = new AbortController();
    const iterator = followLog(log, {
      signal: controller.signal,
      from: "start",
      pollIntervalMs: 20,
      maxLineBytes: 100,
      maxReadBytes: 64,
    });
    await appendFile(log, `${"a".repeat(1000)}`);
    expect((await iterator.next()).value).toEqual(["a".repeat(100)]);
    await appendFile(log, `${"a".repeat(500)}\nshort\n`);
    expect(await collect(iterator, (l) => l.includes("short"))).toEqual(["short"]);
    controller.abort();
    await iterator.return();
  });
});

describe("log readers and symbolic links (issue 13)", () => {
  it("never shows through a tail the content of a file a link in the logs directory points to", async () => {
    const dir = await dirs.make();
    const secret = join(dir, "token");
    await writeFile(secret, "s3cret-token-abc\nmore secrets\n");
    const logPath = join(dir, "a.log");
    await symlink(secret, logPath);
    await symlink(secret, `${logPath}.1`);
    expect(await readLogTail(logPath, 10)).toEqual({ lines: [], position: undefined });
    // A real live log in front of a linked rotated file: the tail stops at the link.
    await rm(logPath);
    await writeFile(logPath, "own line\n");
    expect(await tailLines(logPath, 10)).toEqual(["own line"]);
  });

  it("treats a FIFO at the log path as no log, without blocking", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    execFileSync("mkfifo", [logPath]);
    expect(await readLogTail(logPath, 10)).toEqual({ lines: [], position: undefined });
  });

  it("never follows a link at the log path, and follows the regular file that replaces it", async () => {
    const dir = await dirs.make();
    const secret = join(dir, "token");
    await writeFile(secret, "s3cret-token-abc\n");
    const logPath = join(dir, "a.log");
    await symlink(secret, logPath);
    const controller = new AbortController();
    const iterator = followLog(logPath, { signal: controller.signal, pollIntervalMs: 20 });
    const next = iterator.next();
    await appendFile(secret, "appended secret\n");
    await rm(logPath);
    await writeFile(logPath, "own line\n");
    expect((await next).value).toEqual(["own line"]);
    await iterator.return();
    controller.abort();
  });
});
