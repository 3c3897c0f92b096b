/** What the daemon's composition root logs when a background facility fails. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { logRotationFailure } from "../../src/cli/serve.ts";
import { createJsonLogger, type LogSink } from "../../src/core/logger.ts";
import { LogRotator } from "../../src/platform/log-file.ts";

const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("serve logging", () => {
  it("logs a failed log rotation with the file and the error", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-serve-log-"));
    dirs.push(dir);
    // A log path below a regular file: stat fails with ENOTDIR.
    await writeFile(path.join(dir, "file"), "x");
    const logPath = path.join(dir, "file", "a.log");
    const lines: string[] = [];
    const sink: LogSink = { write: (chunk: string) => lines.push(chunk) };
    const rotator = new LogRotator({
      maxBytes: 1,
      onError: logRotationFailure(createJsonLogger({ sink })),
    });
    rotator.add(logPath);
    await rotator.checkNow();
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0] ?? "{}");
    expect(entry).toMatchObject({ level: "warn", msg: "log rotation failed", path: logPath });
    expect(entry.error).toMatchObject({ message: expect.stringContaining("ENOTDIR") });
  });
});
