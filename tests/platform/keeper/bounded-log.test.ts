import { execFileSync } from "node:child_process";
import { lstat, mkdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BoundedLog, DROPPED_MARKER } from "../../../src/platform/keeper/bounded-log.ts";
import { TempDirs } from "../helpers.ts";
import { logFiles } from "../log-check.ts";

const dirs = new TempDirs();
afterEach(() => dirs.cleanup());

async function sizes(logPath: string): Promise<number[]> {
  return Promise.all(logFiles(logPath).map(async (f) => (await stat(f)).size));
}

async function content(logPath: string): Promise<string> {
  const parts = await Promise.all(logFiles(logPath).map((f) => readFile(f, "utf8")));
  return parts.join("");
}

/** Deterministic pseudo-random lines and chunk sizes. */
function* chunks(total: number, seed: number): Generator<Buffer> {
  let x = seed;
  const next = (n: number): number => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
  let text = "";
  for (let i = 0; text.length < total; i++) text += `${i} ${"y".repeat(next(120))}\n`;
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; ) {
    const length = 1 + next(5000);
    yield bytes.subarray(at, at + length);
    at += length;
  }
}

describe("BoundedLog", () => {
  it("never lets a file pass maxBytes, keeps keep + 1 files and loses no byte", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const log = new BoundedLog(logPath, { maxBytes: 4096, keep: 50 });
    let written = "";
    for (const chunk of chunks(150_000, 7)) {
      log.write(chunk);
      written += chunk.toString("utf8");
      for (const size of await sizes(logPath)) expect(size).toBeLessThanOrEqual(4096);
    }
    log.close();
    expect(await content(logPath)).toBe(written);
    expect(log.stats).toMatchObject({ written: written.length, dropped: 0 });
    expect(logFiles(logPath).length).toBe(log.stats.rotations + 1);
  });

  it("drops the oldest file beyond keep, by rename", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const log = new BoundedLog(logPath, { maxBytes: 100, keep: 2 });
    for (let i = 0; i < 40; i++)
      log.write(Buffer.from(`line ${String(i).padStart(2, "0")} ${"z".repeat(20)}\n`));
    log.close();
    expect(logFiles(logPath)).toEqual([`${logPath}.2`, `${logPath}.1`, logPath]);
    const total = (await sizes(logPath)).reduce((a, b) => a + b, 0);
    expect(total).toBeLessThanOrEqual(3 * 100);
    // The newest lines are all there, in order.
    expect((await content(logPath)).trimEnd().split("\n").at(-1)).toMatch(/^line 39 /);
  });

  it("splits a chunk after its last newline that fits, and cuts a line longer than a file", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const log = new BoundedLog(logPath, { maxBytes: 10, keep: 5 });
    log.write(Buffer.from("aaaa\nbbbb\ncccc\n"));
    expect(await readFile(`${logPath}.1`, "utf8")).toBe("aaaa\nbbbb\n");
    expect(await readFile(logPath, "utf8")).toBe("cccc\n");
    log.write(Buffer.from("dddddddddddddddddddd\n"));
    log.close();
    // No newline fits: the non-empty file is rotated first, then the long line is cut at 10.
    expect(await readFile(`${logPath}.3`, "utf8")).toBe("cccc\n");
    expect(await readFile(`${logPath}.2`, "utf8")).toBe("dddddddddd");
    expect(await readFile(`${logPath}.1`, "utf8")).toBe("dddddddddd");
    expect(await readFile(logPath, "utf8")).toBe("\n");
  });

  it("keeps only the live file with keep 0", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const log = new BoundedLog(logPath, { maxBytes: 8, keep: 0 });
    log.write(Buffer.from("one\ntwo\nthree\n"));
    log.close();
    expect(logFiles(logPath)).toEqual([logPath]);
    expect(await readFile(logPath, "utf8")).toBe("three\n");
  });

  it("continues an existing file, and applies lowered limits before the next write", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    await writeFile(logPath, "0123456789\nunfinished");
    for (const i of [1, 2, 3, 4]) await writeFile(`${logPath}.${i}`, `old ${i}\n`);
    const log = new BoundedLog(logPath, { maxBytes: 1000, keep: 2 });
    // Files beyond keep are deleted at once.
    expect(logFiles(logPath)).toEqual([`${logPath}.2`, `${logPath}.1`, logPath]);
    log.write(Buffer.from(" line\n"));
    expect(await readFile(logPath, "utf8")).toBe("0123456789\nunfinished line\n");
    log.setLimits({ maxBytes: 10, keep: 1 });
    expect(logFiles(logPath)).toEqual([`${logPath}.1`, logPath]);
    log.write(Buffer.from("next\n"));
    log.close();
    expect(await readFile(`${logPath}.1`, "utf8")).toBe("0123456789\nunfinished line\n");
    expect(await readFile(logPath, "utf8")).toBe("next\n");
  });

  it("counts what it could not write and says so in the log once it can write again", async () => {
    const dir = await dirs.make();
    const logs = join(dir, "logs");
    await mkdir(logs);
    const logPath = join(logs, "a.log");
    const problems: string[] = [];
    const log = new BoundedLog(logPath, { maxBytes: 200, keep: 1 }, (p) => problems.push(p));
    log.write(Buffer.from("before\n"));
    // The directory vanishes: the rotation's new file cannot be created.
    await rm(logs, { recursive: true });
    log.write(Buffer.from(`${"x".repeat(199)}\n`)); // does not fit: a rotation, which fails
    log.write(Buffer.from("lost too\n"));
    expect(log.stats.dropped).toBe(209);
    expect(problems).toEqual([`${logPath}: ENOENT: no such file or directory`]);
    await mkdir(logs);
    log.write(Buffer.from("after\n"));
    log.close();
    expect(await readFile(logPath, "utf8")).toBe(
      `${DROPPED_MARKER} 209 bytes of output: ENOENT: no such file or directory\nafter\n`,
    );
    expect(log.stats).toMatchObject({ written: 7 + 6, dropped: 209 });
  });
});

describe("BoundedLog and what else may be at its path (issue 13)", () => {
  it("never appends through a symbolic link at the log path, counting the output as dropped until it is removed", async () => {
    const dir = await dirs.make();
    const victim = join(dir, "victim");
    await writeFile(victim, "precious\n");
    const logPath = join(dir, "a.log");
    await symlink(victim, logPath);
    const problems: string[] = [];
    const log = new BoundedLog(logPath, { maxBytes: 200, keep: 2 }, (p) => problems.push(p));
    expect(log.refusal).toBe("a symbolic link, not a regular file: refusing to write through it");
    for (let i = 0; i < 10; i++) log.write(Buffer.from(`output ${i}\n`));
    expect(await readFile(victim, "utf8")).toBe("precious\n");
    expect((await lstat(logPath)).isSymbolicLink()).toBe(true); // not renamed into the chain
    expect(logFiles(logPath)).toEqual([logPath]);
    expect(log.stats).toMatchObject({ written: 0, dropped: 90 });
    expect(problems).toEqual([
      `${logPath}: a symbolic link, not a regular file: refusing to write through it`,
    ]);
    await rm(logPath);
    log.write(Buffer.from("back\n"));
    log.close();
    expect(await readFile(logPath, "utf8")).toBe(
      `${DROPPED_MARKER} 90 bytes of output: a symbolic link, not a regular file: refusing to write through it\nback\n`,
    );
  });

  it("refuses a FIFO or a directory at the log path without blocking", async () => {
    const dir = await dirs.make();
    const fifoPath = join(dir, "fifo.log");
    execFileSync("mkfifo", [fifoPath]);
    const viaFifo = new BoundedLog(fifoPath, { maxBytes: 1000, keep: 1 });
    viaFifo.write(Buffer.from("x\n"));
    expect(viaFifo.refusal).toBe("a FIFO, not a regular file: refusing to write through it");
    expect(viaFifo.stats.dropped).toBe(2);
    const dirPath = join(dir, "dir.log");
    await mkdir(dirPath);
    const viaDir = new BoundedLog(dirPath, { maxBytes: 1000, keep: 1 });
    viaDir.write(Buffer.from("y\n"));
    expect(viaDir.refusal).toMatch(/^a directory/);
    expect(viaDir.stats.dropped).toBe(2);
  });

  it("does not rotate a symbolic link put in place of the live file, nor anything behind it", async () => {
    const dir = await dirs.make();
    const victim = join(dir, "victim");
    await writeFile(victim, "precious\n");
    const logPath = join(dir, "a.log");
    const log = new BoundedLog(logPath, { maxBytes: 30, keep: 2 });
    log.write(Buffer.from("first line\n"));
    // Swapped while the keeper holds the file open: the old file moved away, a link in its place.
    await rename(logPath, join(dir, "moved-away"));
    await symlink(victim, logPath);
    log.write(Buffer.from(`${"z".repeat(25)}\n`)); // does not fit: a rotation is due
    log.write(Buffer.from("more\n"));
    log.close();
    expect(await readFile(victim, "utf8")).toBe("precious\n");
    expect((await lstat(logPath)).isSymbolicLink()).toBe(true);
    expect(logFiles(logPath)).toEqual([logPath]); // nothing renamed to .1
    expect(await readFile(join(dir, "moved-away"), "utf8")).toBe("first line\n");
    expect(log.stats.dropped).toBe(26 + 5);
  });
});
