import { appendFile, mkdir, readFile, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  agentLogPath,
  followLog,
  LogRotator,
  readLogTail,
  rotateIfNeeded,
  tailLines,
} from "../../src/platform/log-file.ts";
import { spawnAgent } from "../../src/platform/spawn-agent.ts";
import { terminateGroup } from "../../src/platform/terminate-group.ts";
import { fixture, ProcessTracker, TempDirs, waitForLogLine } from "./helpers.ts";

const dirs = new TempDirs();
const tracker = new ProcessTracker();

afterEach(async () => {
  const leaked = tracker.leaked();
  await dirs.cleanup();
  expect(leaked).toEqual([]);
});

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

describe("rotateIfNeeded", () => {
  it("leaves a log below the limit alone and ignores a missing one", async () => {
    const dir = await dirs.make();
    const log = agentLogPath(dir, "alpha");
    expect(log).toBe(join(dir, "alpha.log"));
    expect(await rotateIfNeeded(log, { maxBytes: 10 })).toBe(false);
    await writeFile(log, "short\n");
    expect(await rotateIfNeeded(log, { maxBytes: 100 })).toBe(false);
    expect(await readFile(log, "utf8")).toBe("short\n");
  });

  it("copy-truncates and keeps three old files, dropping the oldest", async () => {
    const dir = await dirs.make();
    const log = join(dir, "a.log");
    for (const generation of [1, 2, 3, 4]) {
      await writeFile(log, `generation ${generation}\n`);
      expect(await rotateIfNeeded(log, { maxBytes: 5, keep: 3 })).toBe(true);
      expect((await stat(log)).size).toBe(0);
    }
    expect(await readFile(`${log}.1`, "utf8")).toBe("generation 4\n");
    expect(await readFile(`${log}.2`, "utf8")).toBe("generation 3\n");
    expect(await readFile(`${log}.3`, "utf8")).toBe("generation 2\n");
    expect(await exists(`${log}.4`)).toBe(false);
  });

  it("keeps a live agent writing at the start of the truncated file", async () => {
    const dir = await dirs.make();
    const log = join(dir, "chatty.log");
    const agent = await spawnAgent({
      argv: [process.execPath, fixture("chatty.mjs")],
      cwd: dir,
      env: {},
      logPath: log,
    });
    tracker.track(agent.pid);
    await waitForLogLine(log, /^ready$/);
    process.kill(agent.pid, "SIGUSR1");
    await waitForLogLine(log, /^burst 1 done$/);
    const before = (await stat(log)).size;
    expect(await rotateIfNeeded(log, { maxBytes: 1000 })).toBe(true);
    expect((await stat(`${log}.1`)).size).toBe(before);

    process.kill(agent.pid, "SIGUSR1");
    await waitForLogLine(log, /^burst 2 done$/);
    // O_APPEND: the agent's writes continue at offset 0, not at its old offset (no hole of NULs).
    const text = await readFile(log, "utf8");
    expect(text.startsWith("burst 2 line 0 ")).toBe(true);
    expect(text).not.toContain("\0");
    // 200 lines of 100 bytes and the "done" line: nothing else, so nothing before offset 0.
    expect((await stat(log)).size).toBe(200 * 100 + "burst 2 done\n".length);
    await terminateGroup(agent.pgid, { stopTimeoutMs: 5000, exited: agent.exited });
  });
});

describe("LogRotator", () => {
  it("rotates registered logs periodically until its signal aborts", async () => {
    const dir = await dirs.make();
    const log = join(dir, "a.log");
    const other = join(dir, "b.log");
    await writeFile(log, "x".repeat(200));
    await writeFile(other, "y".repeat(200));
    const controller = new AbortController();
    const rotated: string[] = [];
    let resolveRotated: () => void = () => {};
    const seen = new Promise<void>((resolve) => {
      resolveRotated = resolve;
    });
    const rotator = new LogRotator({
      intervalMs: 20,
      maxBytes: 100,
      keep: 1,
      onRotate: (path) => {
        rotated.push(path);
        resolveRotated();
      },
    });
    rotator.add(log);
    rotator.add(join(dir, "missing.log"));
    const running = rotator.run(controller.signal);
    await seen;
    controller.abort();
    await running;
    expect(rotated).toEqual([log]);
    expect((await stat(log)).size).toBe(0);
    expect((await stat(other)).size).toBe(200);
  });

  it("reports failures to onError and carries on", async () => {
    const dir = await dirs.make();
    const errors: string[] = [];
    const rotator = new LogRotator({
      maxBytes: 1,
      onError: (path) => errors.push(path),
    });
    // A non-empty directory where the oldest rotated file goes makes the rotation fail early.
    const log = join(dir, "a.log");
    await writeFile(log, "data");
    await mkdir(`${log}.3`);
    await writeFile(`${log}.3/file`, "");
    const other = join(dir, "b.log");
    await writeFile(other, "more data");
    rotator.add(log);
    rotator.add(other);
    await rotator.checkNow();
    expect(errors).toEqual([log]);
    expect(await readFile(log, "utf8")).toBe("data");
    expect(await readFile(`${other}.1`, "utf8")).toBe("more data");
  });
});

describe("tailLines", () => {
  it("returns the last complete lines, leaving out an unfinished one", async () => {
    const dir = await dirs.make();
    const log = join(dir, "a.log");
    expect(await tailLines(log, 5)).toEqual([]);
    await writeFile(log, "one\r\ntwo\nthree\nfour\nunfinished");
    expect(await tailLines(log, 2)).toEqual(["three", "four"]);
    expect(await tailLines(log, 10)).toEqual(["one", "two", "three", "four"]);
    const tail = await readLogTail(log, 1);
    expect(tail).toEqual({ lines: ["four"], endOffset: "one\r\ntwo\nthree\nfour\n".length });
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
});

describe("followLog", () => {
  it("yields appended lines and restarts from the beginning after a truncation", async () => {
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
    const afterRotation = iterator.next();
    await appendFile(log, "after rotation\n");
    expect((await afterRotation).value).toEqual(["after rotation"]);

    const ending = iterator.next();
    controller.abort();
    expect((await ending).done).toBe(true);
  });

  it("waits for a missing file and follows it from a given offset", async () => {
    const dir = await dirs.make();
    const log = join(dir, "later.log");
    const controller = new AbortController();
    const iterator = followLog(log, {
      signal: controller.signal,
      pollIntervalMs: 20,
      fromOffset: 0,
    });
    const next = iterator.next();
    await writeFile(log, "hello\n");
    expect((await next).value).toEqual(["hello"]);
    await iterator.return();
    controller.abort();
  });
});
