import { describe, expect, it } from "vitest";
import {
  canTransition,
  IllegalTransitionError,
  isLive,
  type Lifecycle,
  transition,
} from "../../src/core/agent-state.ts";

const discovered: Lifecycle = { state: "DISCOVERED", reason: "", message: "", sinceMs: 0 };

describe("agent state machine", () => {
  it("records reason, message and time on a legal transition", () => {
    const next = transition(discovered, "STARTING", "DEPLOY", "deploy requested", 42);
    expect(next).toEqual({
      state: "STARTING",
      reason: "DEPLOY",
      message: "deploy requested",
      sinceMs: 42,
    });
  });

  it("refuses an edge the lifecycle does not have", () => {
    expect(() => transition(discovered, "STOPPING", "X", "", 1)).toThrow(IllegalTransitionError);
    expect(canTransition("STOPPING", "RUNNING")).toBe(false);
    expect(canTransition("RUNNING", "STARTING")).toBe(false);
  });

  it("says FAILED or STOPPED after a process only through STOPPING, once its group is gone", () => {
    for (const s of ["STARTING", "RUNNING"] as const) {
      expect(canTransition(s, "FAILED")).toBe(false);
      expect(canTransition(s, "STOPPED")).toBe(false);
    }
    expect(canTransition("STOPPING", "FAILED")).toBe(true);
    expect(canTransition("STOPPING", "STOPPED")).toBe(true);
  });

  it("lets a live agent be stopped from every live state", () => {
    for (const s of ["STARTING", "RUNNING", "BACKOFF"] as const) {
      expect(canTransition(s, "STOPPING")).toBe(true);
    }
  });

  it("counts only starting, running, backoff and stopping agents as live", () => {
    expect(
      (
        [
          "DISCOVERED",
          "STARTING",
          "RUNNING",
          "BACKOFF",
          "STOPPING",
          "STOPPED",
          "FAILED",
          "INVALID",
        ] as const
      ).filter(isLive),
    ).toEqual(["STARTING", "RUNNING", "BACKOFF", "STOPPING"]);
  });
});
