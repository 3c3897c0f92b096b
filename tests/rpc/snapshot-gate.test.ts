import { describe, expect, it } from "vitest";
import { SnapshotGate } from "../../src/rpc/snapshot-gate.ts";

const never = new AbortController().signal;

describe("SnapshotGate", () => {
  it("lets at most `limit` snapshots through and passes a freed place to the next in order", async () => {
    const gate = new SnapshotGate(2, 60_000);
    const first = await gate.enter(never);
    const second = await gate.enter(never);
    const order: string[] = [];
    const third = gate.enter(never).then((leave) => {
      order.push("third");
      return leave;
    });
    const fourth = gate.enter(never).then((leave) => {
      order.push("fourth");
      return leave;
    });
    await Promise.resolve();
    expect(order).toEqual([]);
    first();
    first(); // releasing twice frees one place only
    (await third)();
    second();
    (await fourth)();
    expect(order).toEqual(["third", "fourth"]);
    // Every place is free again.
    const leaves = await Promise.all([gate.enter(never), gate.enter(never)]);
    for (const leave of leaves) leave();
  });

  it("stops waiting when the watcher goes away", async () => {
    const gate = new SnapshotGate(1, 60_000);
    const held = await gate.enter(never);
    const gone = new AbortController();
    const waiting = gate.enter(gone.signal);
    gone.abort();
    (await waiting)(); // a no-op release
    held();
    (await gate.enter(never))();
  });

  it("frees a place held longer than maxHoldMs, so a client that never reads holds up no one", async () => {
    const gate = new SnapshotGate(1, 20);
    await gate.enter(never); // never released by its holder
    const next = await gate.enter(never);
    next();
  });
});
