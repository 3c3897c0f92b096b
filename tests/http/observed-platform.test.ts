import { describe, expect, it } from "vitest";
import { observeRunnerPlatform } from "../../src/http/observed-platform.ts";
import type { RunnerPlatform } from "../../src/supervisor/runner-deps.ts";

function fakePlatform(probe: RunnerPlatform["probe"]): RunnerPlatform {
  return {
    spawn: async () => {
      throw new Error("not spawned here");
    },
    terminateGroup: async () => ({ killed: false }),
    probe,
    groupResidentBytes: (pgid) => pgid * 10,
  };
}

describe("observeRunnerPlatform", () => {
  it("reports each probe's port and duration and each memory reading, passing results through", async () => {
    const probes: [number, number][] = [];
    const memory: [number, number][] = [];
    const platform = observeRunnerPlatform(
      fakePlatform(async (options) => ({ ok: options.port === 8100, message: "HTTP 200" })),
      {
        observeProbe: (port, seconds) => probes.push([port, seconds]),
        observeMemory: (pgid, bytes) => memory.push([pgid, bytes]),
      },
    );
    const signal = new AbortController().signal;
    const base = { host: "127.0.0.1", path: "/status", timeoutMs: 100, signal };
    expect(await platform.probe({ ...base, port: 8100 })).toEqual({
      ok: true,
      message: "HTTP 200",
    });
    expect(await platform.probe({ ...base, port: 8101 })).toEqual({
      ok: false,
      message: "HTTP 200",
    });
    expect(platform.groupResidentBytes(7)).toBe(70);
    expect(probes.map(([port]) => port)).toEqual([8100, 8101]);
    for (const [, seconds] of probes) expect(seconds).toBeGreaterThanOrEqual(0);
    expect(memory).toEqual([[7, 70]]);
  });

  it("does not count a probe aborted because its process went away", async () => {
    const probes: number[] = [];
    const controller = new AbortController();
    const platform = observeRunnerPlatform(
      fakePlatform(async (options) => {
        controller.abort();
        throw options.signal.reason;
      }),
      { observeProbe: (port) => probes.push(port), observeMemory: () => undefined },
    );
    await expect(
      platform.probe({ host: "h", port: 1, path: "/", timeoutMs: 1, signal: controller.signal }),
    ).rejects.toBeDefined();
    expect(probes).toEqual([]);
  });
});
