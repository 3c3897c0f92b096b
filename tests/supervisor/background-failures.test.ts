/**
 * Failures of the runner's background work (probes, terminating a group) on a fake platform:
 * each is caught, logged with the agent's name, and leaves the agent in a defined state; none
 * becomes an unhandled rejection (which ends a Node 24 process).
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ExitRecord } from "../../src/core/agent-state.ts";
import { isDeployError } from "../../src/core/errors.ts";
import type { LogFields, Logger } from "../../src/core/logger.ts";
import type { ProcessHandle, RunnerPlatform } from "../../src/supervisor/runner-deps.ts";
import { createHarness, faultAgentToml, type Harness } from "./harness.ts";

let harness: Harness | undefined;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

beforeEach(() => {
  process.on("unhandledRejection", onUnhandled);
});

afterEach(async () => {
  await harness?.close();
  harness = undefined;
  process.off("unhandledRejection", onUnhandled);
  expect(unhandled.splice(0)).toEqual([]);
});

/** A pid no process can have (above any pid_max), so nothing real is ever signalled. */
const FAKE_PID = 2_000_000_000;

interface FakeProcess {
  readonly handle: ProcessHandle;
  exit(record: Omit<ExitRecord, "atMs">): void;
}

function fakeProcess(): FakeProcess {
  let exit: (record: ExitRecord) => void = () => undefined;
  const exited = new Promise<ExitRecord>((resolve) => {
    exit = resolve;
  });
  return {
    handle: { pid: FAKE_PID, startTimeTicks: undefined, exited },
    exit: (record) => exit({ ...record, atMs: Date.now() }),
  };
}

function fakePlatform(overrides: Partial<RunnerPlatform>): {
  platform: RunnerPlatform;
  processes: FakeProcess[];
} {
  const processes: FakeProcess[] = [];
  const platform: RunnerPlatform = {
    async spawn() {
      const proc = fakeProcess();
      processes.push(proc);
      return proc.handle;
    },
    async terminateGroup(_pgid, options) {
      processes.at(-1)?.exit({ code: null, signal: "SIGTERM" });
      await options.exited;
      return { killed: false };
    },
    async probe() {
      return { ok: true, message: "HTTP 200" };
    },
    groupResidentBytes: () => 0,
    ...overrides,
  };
  return { platform, processes };
}

function recordingLogger(): Logger & {
  entries: { level: string; msg: string; fields: LogFields }[];
} {
  const entries: { level: string; msg: string; fields: LogFields }[] = [];
  const at =
    (level: string) =>
    (msg: string, fields: LogFields = {}): void => {
      entries.push({ level, msg, fields });
    };
  return { entries, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

describe("background failures", () => {
  it("fails an agent whose old process group cannot be terminated, and logs why", async () => {
    const logger = recordingLogger();
    const { platform, processes } = fakePlatform({
      terminateGroup: () => Promise.reject(new Error("cannot signal the group")),
    });
    harness = await createHarness({ a: faultAgentToml("a") }, { platform, logger });
    await harness.registry.deploy("a");
    processes[0]?.exit({ code: 1, signal: null });
    const failed = await harness.waitFor("a", (s) => s.state === "FAILED");
    expect(failed).toMatchObject({ stateReason: "INTERNAL_ERROR", port: 0, pid: 0 });
    expect(failed.stateMessage).toContain("cannot signal the group");
    const logged = logger.entries.find((e) => e.level === "error");
    expect(logged?.fields).toMatchObject({ agent: "a" });
    expect(String(logged?.fields.error)).toContain("cannot signal the group");
  });

  it("counts a probe that throws as a failed probe", async () => {
    const { platform } = fakePlatform({
      probe: () => {
        throw new Error("probe exploded");
      },
    });
    harness = await createHarness(
      { a: faultAgentToml("a", { deployment: { start_timeout: 0.5 } }) },
      { platform },
    );
    const error = await harness.registry.deploy("a").catch((e: unknown) => e);
    expect(isDeployError(error, "AGENT_START_TIMEOUT")).toBe(true);
    expect(harness.registry.status("a")).toMatchObject({ state: "FAILED", pid: 0, port: 0 });
    expect(harness.registry.status("a").healthMessage).toContain("probe exploded");
  });
});
