import { describe, expect, it } from "vitest";
import { KeyedQueue } from "../../src/core/keyed-queue.ts";

/** A promise and the functions that settle it. */
function deferred<T>(): {
  readonly promise: Promise<T>;
  readonly resolve: (value: T) => void;
  readonly reject: (error: Error) => void;
} {
  let resolve: (value: T) => void = () => {};
  let reject: (error: Error) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe("KeyedQueue", () => {
  it("runs one key's operations one after another, after a failure too", async () => {
    const queue = new KeyedQueue();
    const order: string[] = [];
    const first = deferred<string>();
    const a = queue.run("alpha", () => {
      order.push("a starts");
      return first.promise;
    });
    const b = queue.run("alpha", async () => {
      order.push("b starts");
      return "b";
    });
    await Promise.resolve();
    expect(order).toEqual(["a starts"]);
    first.reject(new Error("a failed"));
    await expect(a).rejects.toThrow("a failed");
    expect(await b).toBe("b");
    expect(order).toEqual(["a starts", "b starts"]);
  });

  it("does not hold up another key", async () => {
    const queue = new KeyedQueue();
    const blocked = deferred<void>();
    const slow = queue.run("alpha", () => blocked.promise);
    expect(await queue.run("beta", async () => "beta")).toBe("beta");
    blocked.resolve();
    await slow;
  });

  it("forgets a key once its last operation has settled", async () => {
    const queue = new KeyedQueue();
    await queue.run("alpha", async () => 1);
    await expect(queue.run("alpha", () => Promise.reject(new Error("no")))).rejects.toThrow("no");
    // The tail settles a turn after the operation.
    await new Promise((resolve) => setImmediate(resolve));
    expect(queue.size).toBe(0);
  });
});
