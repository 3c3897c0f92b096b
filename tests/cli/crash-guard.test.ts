import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { type GuardedProcess, installCrashGuard } from "../../src/cli/crash-guard.ts";

describe("crash guard", () => {
  it("hands uncaught errors to the daemon's handler, those before it first", () => {
    const proc = new EventEmitter();
    const exits: number[] = [];
    const guard = installCrashGuard(proc as unknown as GuardedProcess, {
      deadlineMs: 60_000,
      exit: (code) => exits.push(code),
    });
    const early = new Error("early");
    proc.emit("unhandledRejection", early, Promise.resolve());
    const seen: [unknown, string][] = [];
    guard.onFatal((error, origin) => seen.push([error, origin]));
    const late = new Error("late");
    proc.emit("uncaughtException", late);
    expect(seen).toEqual([
      [early, "unhandledRejection"],
      [late, "uncaughtException"],
    ]);
    expect(exits).toEqual([]);
  });

  it("ends the process after the deadline once an error came", async () => {
    const proc = new EventEmitter();
    const exited = new Promise<number>((resolve) => {
      installCrashGuard(proc as unknown as GuardedProcess, { deadlineMs: 10, exit: resolve });
    });
    proc.emit("uncaughtException", new Error("boom"));
    expect(await exited).toBe(1);
  });
});
