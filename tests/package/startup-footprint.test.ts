/**
 * What the compiled daemon loads at start-up (memory is the issue-15 budget): not undici (which
 * an ESM import of node:http pulls in), not protobufjs (health and reflection load it at their
 * first call), not the client CLI. A child process runs `serve` from dist/ and reports.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { REPO } from "./installed.ts";

const run = promisify(execFile);
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("the compiled daemon's start-up", () => {
  it("loads neither undici nor protobufjs nor the client CLI until they are needed", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-footprint-"));
    dirs.push(dir);
    const probe = path.join(dir, "probe.mjs");
    await writeFile(
      probe,
      `import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { runServe } from ${JSON.stringify(path.join(REPO, "dist/src/cli/serve.js"))};
const dir = ${JSON.stringify(dir)};
mkdirSync(dir + "/agents", { recursive: true });
let stop;
const exited = runServe({
  argv: ["--agents-dir", dir + "/agents", "--state-dir", dir + "/state", "--listen", "127.0.0.1:0", "--http-listen", "off", "--log-level", "error"],
  env: { HOME: dir }, cwd: dir,
  stdout: { write(line) { if (line.includes("listening")) report(); return true; } },
  stderr: process.stderr,
  shutdownSignals: () => new Promise((resolve) => { stop = resolve; }),
});
function report() {
  const cjs = Object.keys(createRequire(import.meta.url).cache);
  process.stdout.write(JSON.stringify({
    undici: process.moduleLoadList.some((m) => m.includes("undici")),
    readline: process.moduleLoadList.some((m) => m === "NativeModule readline"),
    protobufjs: cjs.some((f) => f.includes("/protobufjs/")),
    healthCheck: cjs.some((f) => f.includes("/grpc-health-check/")),
  }));
  setImmediate(() => stop("SIGTERM"));
}
process.exitCode = await exited;
`,
    );
    const { stdout } = await run(process.execPath, [probe], { timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({
      undici: false,
      readline: false,
      protobufjs: false,
      healthCheck: false,
    });
  });
});
