import { describe, expect, it } from "vitest";
import type { LogFields, Logger } from "../../src/core/logger.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { NameLocks } from "../../src/packages/name-locks.ts";

/** A logger whose `errorLogged` resolves with the first error line's fields. */
function errorLogger(): Logger & { readonly errorLogged: Promise<LogFields | undefined> } {
  let resolve: (fields: LogFields | undefined) => void = () => {};
  const errorLogged = new Promise<LogFields | undefined>((r) => (resolve = r));
  return { ...silentLogger, error: (_msg, fields) => resolve(fields), errorLogged };
}

describe("NameLocks", () => {
  it("runs a collection asked for during an install once the install releases the name", async () => {
    const collected: string[] = [];
    let collectedNow: () => void = () => {};
    const done = new Promise<void>((resolve) => (collectedNow = resolve));
    const locks = new NameLocks(async (name) => {
      collected.push(name);
      collectedNow();
    }, silentLogger);
    await locks.hold("alpha", "install", async () => {
      await locks.collect("alpha");
      expect(collected).toEqual([]);
    });
    await done;
    expect(collected).toEqual(["alpha"]);
  });

  it("refuses a second install of a held name with INSTALL_IN_PROGRESS", async () => {
    const locks = new NameLocks(async () => {}, silentLogger);
    await locks.hold("alpha", "install", async () => {
      await expect(locks.hold("alpha", "remove", async () => {})).rejects.toMatchObject({
        code: "INSTALL_IN_PROGRESS",
      });
    });
  });

  it("logs a deferred collection that fails, with the agent, instead of an unhandled rejection", async () => {
    const logger = errorLogger();
    const locks = new NameLocks(async () => {
      throw new Error("disk gone");
    }, logger);
    await locks.hold("alpha", "install", () => locks.collect("alpha"));
    const fields = await logger.errorLogged;
    expect(fields).toMatchObject({ agent: "alpha", task: "collect old package versions" });
    expect(fields?.error).toMatchObject({ message: "disk gone" });
  });
});
