import { describe, expect, it } from "vitest";
import {
  backoffDelayMs,
  decideAfterFailure,
  type RestartPolicyInput,
  restartCountAfterStableRun,
} from "../../src/core/restart-policy.ts";

const base: RestartPolicyInput = {
  cause: { kind: "exit", code: 1, signal: null },
  duringStart: false,
  manualStart: false,
  autoRestart: true,
  restartCount: 0,
  maxRestarts: 3,
  restartDelayMs: 1000,
};

describe("restart policy", () => {
  it("treats exit code 0 as the agent stopping itself", () => {
    const d = decideAfterFailure({ ...base, cause: { kind: "exit", code: 0, signal: null } });
    expect(d).toMatchObject({ action: "stopped", reason: "EXITED" });
  });

  it("restarts a crashed agent after the first backoff delay", () => {
    expect(decideAfterFailure(base)).toMatchObject({
      action: "restart",
      reason: "EXITED",
      delayMs: 1000,
    });
  });

  it("doubles the delay per consecutive restart and caps it at 30 s", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelayMs(1000, n))).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000,
    ]);
    expect(backoffDelayMs(0, 5)).toBe(0);
    expect(backoffDelayMs(1000, 10_000)).toBe(30000);
  });

  it("gives up with CRASH_LOOP once the budget is spent", () => {
    expect(decideAfterFailure({ ...base, restartCount: 3 })).toMatchObject({
      action: "failed",
      reason: "CRASH_LOOP",
    });
  });

  it("reports a death by signal as SIGNALED", () => {
    const d = decideAfterFailure({
      ...base,
      cause: { kind: "exit", code: null, signal: "SIGSEGV" },
    });
    expect(d).toMatchObject({ action: "restart", reason: "SIGNALED" });
    expect(d.message).toContain("SIGSEGV");
  });

  it("fails a manual start that exits before its first healthy probe", () => {
    const d = decideAfterFailure({ ...base, duringStart: true, manualStart: true });
    expect(d).toMatchObject({ action: "failed", reason: "EXITED_DURING_START" });
  });

  it("fails a manual start that times out with START_TIMEOUT", () => {
    const d = decideAfterFailure({
      ...base,
      cause: { kind: "start-timeout" },
      duringStart: true,
      manualStart: true,
    });
    expect(d).toMatchObject({ action: "failed", reason: "START_TIMEOUT" });
  });

  it("retries an automatic start that fails, within the budget", () => {
    const d = decideAfterFailure({ ...base, duringStart: true, restartCount: 1 });
    expect(d).toMatchObject({ action: "restart", delayMs: 2000 });
  });

  it("keeps an unhealthy agent running when auto_restart is off", () => {
    const d = decideAfterFailure({ ...base, cause: { kind: "unhealthy" }, autoRestart: false });
    expect(d).toMatchObject({ action: "keep", reason: "HEALTH_CHECK_FAILED" });
  });

  it("fails a crashed agent when auto_restart is off", () => {
    expect(decideAfterFailure({ ...base, autoRestart: false })).toMatchObject({
      action: "failed",
      reason: "EXITED",
    });
  });

  it("restarts an agent over its memory limit with MEMORY_LIMIT_EXCEEDED", () => {
    expect(decideAfterFailure({ ...base, cause: { kind: "memory" } })).toMatchObject({
      action: "restart",
      reason: "MEMORY_LIMIT_EXCEEDED",
    });
  });

  it("resets the restart count after a stable healthy run", () => {
    expect(restartCountAfterStableRun(2, 1000, 60_999, 60_000)).toBe(2);
    expect(restartCountAfterStableRun(2, 1000, 61_000, 60_000)).toBe(0);
    expect(restartCountAfterStableRun(2, undefined, 1e9, 60_000)).toBe(2);
  });
});
