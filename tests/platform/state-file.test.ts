import * as fs from "node:fs/promises";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  readStateFile,
  StateFile,
  type StateFs,
  writeStateFile,
} from "../../src/platform/state-file.ts";
import { TempDirs } from "./helpers.ts";

const dirs = new TempDirs();

afterEach(async () => {
  await dirs.cleanup();
});

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
}

/** Real fs/promises whose file handles fail every write with ENOSPC, as a full disk would. */
const fullDisk: StateFs = {
  ...fs,
  open: (async (...args: Parameters<typeof fs.open>) => {
    const handle = await fs.open(...args);
    return new Proxy(handle, {
      get(target, property, receiver) {
        if (property === "writeFile" || property === "write") {
          return () => Promise.reject(enospc());
        }
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  }) as typeof fs.open,
};

describe("writeStateFile / readStateFile", () => {
  it("writes atomically, keeps the previous copy as .bak and leaves no temp file", async () => {
    const dir = await dirs.make();
    const path = join(dir, "state.json");
    expect(await readStateFile(path)).toMatchObject({ ok: false, reason: "missing" });

    await writeStateFile(path, { agents: ["a"] });
    expect(await readStateFile(path)).toEqual({
      ok: true,
      data: { agents: ["a"] },
      source: "primary",
    });
    await writeStateFile(path, { agents: ["a", "b"] });
    expect(JSON.parse(await readFile(join(dir, "state.json.bak"), "utf8"))).toEqual({
      agents: ["a"],
    });
    expect((await readdir(dir)).sort()).toEqual(["state.json", "state.json.bak"]);
  });

  it("sets a corrupt file aside and falls back to the backup", async () => {
    const dir = await dirs.make();
    const path = join(dir, "state.json");
    await writeStateFile(path, { generation: 1 });
    await writeStateFile(path, { generation: 2 });
    await writeFile(path, '{"generation": 3, "trunc');
    const result = await readStateFile(path, { now: () => Date.UTC(2030, 0, 2, 3, 4, 5, 6) });
    expect(result).toEqual({
      ok: true,
      data: { generation: 1 },
      source: "backup",
      corruptCopy: `${path}.corrupt-2030-01-02T03-04-05-006Z`,
    });
    expect(await readFile(`${path}.corrupt-2030-01-02T03-04-05-006Z`, "utf8")).toBe(
      '{"generation": 3, "trunc',
    );
    // The next write must not back the corrupt file up over the good .bak.
    await writeStateFile(path, { generation: 4 });
    expect(JSON.parse(await readFile(`${path}.bak`, "utf8"))).toEqual({ generation: 1 });
    expect(await readStateFile(path)).toMatchObject({ ok: true, data: { generation: 4 } });
  });

  it("reports corruption when no good copy is left", async () => {
    const dir = await dirs.make();
    const path = join(dir, "state.json");
    await writeFile(path, "");
    const result = await readStateFile(path);
    expect(result).toMatchObject({ ok: false, reason: "corrupt" });
    if (result.ok) throw new Error("unreachable");
    expect(result.message).toContain("empty");
    expect(result.message).toContain(path);
  });

  it("rejects a write whose directory cannot exist", async () => {
    const dir = await dirs.make();
    const notADirectory = join(dir, "file");
    await writeFile(notADirectory, "");
    await expect(writeStateFile(join(notADirectory, "state.json"), {})).rejects.toMatchObject({
      code: "ENOTDIR",
    });
  });

  it("rejects a failed write without touching the previous good file", async () => {
    const dir = await dirs.make();
    const path = join(dir, "state.json");
    await writeStateFile(path, { good: true });
    await expect(writeStateFile(path, { good: false }, { fs: fullDisk })).rejects.toMatchObject({
      code: "ENOSPC",
    });
    expect(await readStateFile(path)).toMatchObject({ ok: true, data: { good: true } });
    expect(await readdir(dir)).toEqual(["state.json"]);
  });

  it("refuses data that is not JSON", async () => {
    const dir = await dirs.make();
    await expect(writeStateFile(join(dir, "s.json"), undefined)).rejects.toThrow(TypeError);
  });
});

describe("StateFile", () => {
  it("serialises concurrent writes and the last one wins", async () => {
    const dir = await dirs.make();
    const state = new StateFile(join(dir, "state.json"));
    const writes = Array.from({ length: 20 }, (_, index) => state.write({ revision: index }));
    await Promise.all(writes);
    expect(await state.read()).toMatchObject({ ok: true, data: { revision: 19 } });
    expect((await readdir(dir)).sort()).toEqual(["state.json", "state.json.bak"]);
    // Coalesced: the first write, then the newest of those that waited.
    expect(JSON.parse(await readFile(join(dir, "state.json.bak"), "utf8"))).toEqual({
      revision: 0,
    });
  });

  it("never lets two writes overlap", async () => {
    const dir = await dirs.make();
    let active = 0;
    let maxActive = 0;
    const counting: StateFs = {
      ...fs,
      rename: async (...args: Parameters<typeof fs.rename>) => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((resolve) => setImmediate(resolve));
        await fs.rename(...args);
        active--;
      },
    };
    const state = new StateFile(join(dir, "state.json"), { fs: counting });
    await Promise.all([state.write(1), state.write(2), state.write(3)]);
    await state.write(4);
    expect(maxActive).toBe(1);
    expect(await state.read()).toMatchObject({ data: 4 });
  });

  it("rejects the callers of a failed write, then writes again", async () => {
    const dir = await dirs.make();
    let failNext = true;
    const flaky: StateFs = {
      ...fs,
      open: (async (...args: Parameters<typeof fs.open>) => {
        if (failNext && String(args[0]).includes(".tmp-")) {
          failNext = false;
          throw Object.assign(new Error("EROFS: read-only file system"), { code: "EROFS" });
        }
        return fs.open(...args);
      }) as typeof fs.open,
    };
    const state = new StateFile(join(dir, "state.json"), { fs: flaky });
    await expect(state.write({ a: 1 })).rejects.toMatchObject({ code: "EROFS" });
    await state.write({ a: 2 });
    expect(await state.read()).toMatchObject({ ok: true, data: { a: 2 } });
  });
});
