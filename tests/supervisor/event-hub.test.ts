import { describe, expect, it } from "vitest";
import type { AgentStatus } from "../../src/core/agent-status.ts";
import { EventHub } from "../../src/supervisor/event-hub.ts";

function change(name: string) {
  return {
    kind: "change" as const,
    name,
    previousState: "DISCOVERED" as const,
    previousHealth: "UNKNOWN" as const,
    status: { name } as unknown as AgentStatus,
    atMs: 0,
  };
}

describe("EventHub", () => {
  it("numbers changes from the base revision and replays those after a revision", () => {
    const hub = new EventHub({ historyLimit: 10, baseRevision: 1_000 });
    expect(hub.revision).toBe(1_000);
    expect(hub.since(1_000)).toEqual([]);
    for (const n of ["a", "b", "c"]) hub.publish(change(n));
    expect(hub.revision).toBe(1_003);
    expect(hub.since(1_001)?.map((c) => [c.revision, c.name])).toEqual([
      [1_002, "b"],
      [1_003, "c"],
    ]);
  });

  it("asks for a snapshot when the changes left the history or the revision is not its own", () => {
    const hub = new EventHub({ historyLimit: 2, baseRevision: 100 });
    for (const n of ["a", "b", "c"]) hub.publish(change(n));
    expect(hub.since(101)?.length).toBe(2);
    expect(hub.since(100)).toBeUndefined(); // 101 was dropped from the history of 2
    expect(hub.since(50)).toBeUndefined(); // a previous run's revision
    expect(hub.since(10_000)).toBeUndefined(); // a revision this hub never reached
  });

  it("moves past a previous run's last revision and drops the history it cannot join", () => {
    const hub = new EventHub({ historyLimit: 10, baseRevision: 100 });
    hub.publish(change("a"));
    hub.advancePast(50);
    expect(hub.revision).toBe(101);
    hub.advancePast(5_000);
    expect(hub.revision).toBe(5_000);
    expect(hub.since(100)).toBeUndefined();
    expect(hub.publish(change("b")).revision).toBe(5_001);
    expect(hub.since(5_000)?.map((c) => c.name)).toEqual(["b"]);
  });

  it("delivers each change to every subscriber until it unsubscribes", () => {
    const hub = new EventHub();
    const seen: string[] = [];
    const off = hub.subscribe((c) => seen.push(c.name));
    hub.publish(change("a"));
    off();
    hub.publish(change("b"));
    expect(seen).toEqual(["a"]);
    expect(hub.subscriberCount).toBe(0);
  });

  it("delivers a change to every subscriber even when one of them throws", () => {
    const failures: unknown[] = [];
    const hub = new EventHub({ onListenerError: (error) => failures.push(error) });
    const seen: string[] = [];
    hub.subscribe(() => {
      throw new Error("broken watcher");
    });
    hub.subscribe((c) => seen.push(c.name));
    expect(hub.publish(change("a")).revision).toBe(1);
    expect(seen).toEqual(["a"]);
    expect(failures).toHaveLength(1);
    expect(String(failures[0])).toContain("broken watcher");
    expect(hub.since(0)?.map((c) => c.name)).toEqual(["a"]);
  });
});
