import { chmod, mkdir, readdir, readFile, readlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isDeployError } from "../../src/core/errors.ts";
import {
  readProcessGroup,
  readProcessStartTime,
  readProcStat,
} from "../../src/platform/proc-info.ts";
import { SpawnError, spawnAgent } from "../../src/platform/spawn-agent.ts";
import { terminateGroup } from "../../src/platform/terminate-group.ts";
import { fixture, ProcessTracker, TempDirs, waitForLogLine } from "./helpers.ts";

const dirs = new TempDirs();
const tracker = new ProcessTracker();

afterEach(async () => {
  const leaked = tracker.leaked();
  await dirs.cleanup();
  expect(leaked).toEqual([]);
});

async function spawnError(promise: Promise<unknown>): Promise<SpawnError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof SpawnError))
    throw new Error(`expected a SpawnError, got ${String(error)}`);
  return error;
}

describe("spawnAgent", () => {
  it("runs the agent in its own process group with output appended to its log", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "logs", "echo.log");
    await mkdir(join(dir, "logs"));
    await writeFile(logPath, "earlier run\n");
    const agent = await spawnAgent({
      argv: [process.execPath, fixture("output-lines.mjs"), "wait"],
      cwd: dir,
      env: { FIXTURE_VAR: "hello" },
      output: { file: logPath },
    });
    tracker.track(agent.pid);
    await waitForLogLine(logPath, /^ready$/);

    expect(agent.pgid).toBe(agent.pid);
    expect(readProcessGroup(agent.pid)).toBe(agent.pid);
    expect(agent.startTimeTicks).toBe(readProcessStartTime(agent.pid));
    // stdout and stderr are the log file itself, never a pipe; stdin is /dev/null.
    expect(await readlink(`/proc/${agent.pid}/fd/1`)).toBe(logPath);
    expect(await readlink(`/proc/${agent.pid}/fd/2`)).toBe(logPath);
    expect(await readlink(`/proc/${agent.pid}/fd/0`)).toBe("/dev/null");
    const flags = /flags:\s+(\d+)/.exec(await readFile(`/proc/${agent.pid}/fdinfo/1`, "utf8"));
    const O_APPEND = 0o2000;
    expect(Number.parseInt(flags?.[1] ?? "0", 8) & O_APPEND).toBe(O_APPEND);
    // The daemon keeps no descriptor of the log open.
    const ownFds = await Promise.all(
      (await readdir("/proc/self/fd")).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")),
    );
    expect(ownFds).not.toContain(logPath);

    const { killed } = await terminateGroup(agent.pgid, {
      stopTimeoutMs: 5000,
      exited: agent.exited,
    });
    expect(killed).toBe(false);
    const facts = await agent.exited;
    expect(facts).toMatchObject({ code: 0, signal: null });
    const log = await readFile(logPath, "utf8");
    expect(log.startsWith("earlier run\n")).toBe(true);
    expect(log).toContain(`out ${agent.pid} cwd=${dir} var=hello\n`);
    expect(log).toContain(`err ${agent.pid}\n`);
  });

  it("reports the exit code and a death by signal", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const failing = await spawnAgent({
      argv: [process.execPath, fixture("output-lines.mjs"), "3"],
      cwd: dir,
      env: {},
      output: { file: logPath },
    });
    tracker.track(failing.pid);
    const facts = await failing.exited;
    expect(facts.code).toBe(3);
    expect(facts.signal).toBeNull();
    expect(facts.atMs).toBeGreaterThan(Date.now() - 60_000);

    const killedAgent = await spawnAgent({
      argv: [process.execPath, "-e", "process.kill(process.pid, 'SIGKILL')"],
      cwd: dir,
      env: {},
      output: { file: logPath },
    });
    tracker.track(killedAgent.pid);
    expect(await killedAgent.exited).toMatchObject({ code: null, signal: "SIGKILL" });
  });

  it("reports a missing executable distinctly, naming the command", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "a.log");
    const onPath = await spawnError(
      spawnAgent({
        argv: ["atoll-no-such-cmd", "--x"],
        cwd: dir,
        env: { PATH: dir },
        output: { file: logPath },
      }),
    );
    expect(onPath.failure).toBe("EXECUTABLE_NOT_FOUND");
    expect(onPath.message).toContain("atoll-no-such-cmd");
    expect(isDeployError(onPath, "AGENT_START_FAILED")).toBe(true);

    const absolute = await spawnError(
      spawnAgent({ argv: [join(dir, "missing")], cwd: dir, env: {}, output: { file: logPath } }),
    );
    expect(absolute.failure).toBe("EXECUTABLE_NOT_FOUND");
    expect(absolute.message).toContain(join(dir, "missing"));
  });

  it("reports a file without execute permission as PERMISSION_DENIED", async () => {
    const dir = await dirs.make();
    const script = join(dir, "agent.sh");
    await writeFile(script, "#!/bin/sh\nexit 0\n");
    await chmod(script, 0o644);
    const error = await spawnError(
      spawnAgent({ argv: ["./agent.sh"], cwd: dir, env: {}, output: { file: join(dir, "a.log") } }),
    );
    expect(error.failure).toBe("PERMISSION_DENIED");
    expect(error.message).toContain(script);
  });

  it("reports a missing #! interpreter as EXECUTABLE_NOT_FOUND", async () => {
    const dir = await dirs.make();
    const script = join(dir, "agent");
    await writeFile(script, "#!/nonexistent/interpreter\n");
    await chmod(script, 0o755);
    const error = await spawnError(
      spawnAgent({ argv: [script], cwd: dir, env: {}, output: { file: join(dir, "a.log") } }),
    );
    expect(error.failure).toBe("EXECUTABLE_NOT_FOUND");
    expect(error.message).toContain("interpreter");
  });

  it("reports a missing working directory as SPAWN_FAILED", async () => {
    const dir = await dirs.make();
    const error = await spawnError(
      spawnAgent({
        argv: [process.execPath, "-e", ""],
        cwd: join(dir, "gone"),
        env: {},
        output: { file: join(dir, "a.log") },
      }),
    );
    expect(error.failure).toBe("SPAWN_FAILED");
    expect(error.message).toContain(join(dir, "gone"));
  });

  it("looks commands up in the agent's PATH and relative paths in its cwd", async () => {
    const dir = await dirs.make();
    const bin = join(dir, "bin");
    await mkdir(bin);
    const script = `#!${process.execPath}\nconsole.log("ran", process.argv[1]);\n`;
    await writeFile(join(bin, "my-agent"), script, { mode: 0o755 });
    const logPath = join(dir, "a.log");

    const viaPath = await spawnAgent({
      argv: ["my-agent"],
      cwd: dir,
      env: { PATH: `/nonexistent:${bin}` },
      output: { file: logPath },
    });
    tracker.track(viaPath.pid);
    expect(viaPath.executable).toBe(join(bin, "my-agent"));
    expect(await viaPath.exited).toMatchObject({ code: 0 });

    const relative = await spawnAgent({
      argv: ["./bin/my-agent"],
      cwd: dir,
      env: {},
      output: { file: logPath },
    });
    tracker.track(relative.pid);
    expect(relative.executable).toBe(join(bin, "my-agent"));
    expect(await relative.exited).toMatchObject({ code: 0 });
    expect(readProcStat(relative.pid)).toBeUndefined();
    expect(await readFile(logPath, "utf8")).toBe(
      `ran ${join(bin, "my-agent")}\nran ${join(bin, "my-agent")}\n`,
    );
  });
});
