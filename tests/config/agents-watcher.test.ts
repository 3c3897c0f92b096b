import { mkdir, rename, rm, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DiscoveredAgent } from "../../src/config/agent-definition.ts";
import { watchAgentsDirectory } from "../../src/config/agents-watcher.ts";
import { ConfigError } from "../../src/config/config-error.ts";
import type { DiscoveryResult } from "../../src/config/discovery.ts";
import { discoverAgents } from "../../src/config/discovery.ts";
import { makeTempDir, writeTree } from "./temp-dir.ts";

const WAIT_MS = 10_000;

let root: string;
let cleanup: () => Promise<void>;
let controller: AbortController;

beforeEach(async () => {
  ({ dir: root, cleanup } = await makeTempDir());
  controller = new AbortController();
});
afterEach(async () => {
  controller.abort();
  await cleanup();
});

function names(result: DiscoveryResult): string[] {
  return result.agents.map((a: DiscoveredAgent) =>
    a.kind === "valid" ? a.definition.name : a.name,
  );
}

/** Collects results; `next(predicate)` resolves with the first result (already seen or coming) matching it. */
function recorder() {
  const results: DiscoveryResult[] = [];
  const waiters: {
    predicate: (r: DiscoveryResult) => boolean;
    resolve: (r: DiscoveryResult) => void;
  }[] = [];
  let consumed = 0;
  return {
    results,
    onChange(result: DiscoveryResult): void {
      results.push(result);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(result)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          consumed = results.length;
          waiter.resolve(result);
        }
      }
    },
    next(predicate: (r: DiscoveryResult) => boolean = () => true): Promise<DiscoveryResult> {
      const seen = results.slice(consumed).find(predicate);
      if (seen) {
        consumed = results.indexOf(seen) + 1;
        return Promise.resolve(seen);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no matching change in time")), WAIT_MS);
        waiters.push({
          predicate,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
      });
    },
  };
}

describe("watchAgentsDirectory", () => {
  it("returns the initial result, then reports added, changed and removed definitions", async () => {
    await writeTree(root, "first/agent.toml", "");
    const changes = recorder();
    const initial = await watchAgentsDirectory(root, changes.onChange, {
      signal: controller.signal,
      debounceMs: 20,
    });
    expect(names(initial)).toEqual(["first"]);

    await writeTree(root, "second/agent.toml", "");
    expect(names(await changes.next((r) => r.agents.length === 2))).toEqual(["first", "second"]);

    await writeTree(root, "second/agent.toml", '[agent]\nname = "renamed"\n');
    expect(names(await changes.next((r) => names(r).includes("renamed")))).toEqual([
      "first",
      "renamed",
    ]);

    await rm(path.join(root, "first"), { recursive: true });
    expect(names(await changes.next((r) => r.agents.length === 1))).toEqual(["renamed"]);
  });

  it("notices a definition added to an existing directory and one saved by rename", async () => {
    await mkdir(path.join(root, "later"));
    const changes = recorder();
    await watchAgentsDirectory(root, changes.onChange, {
      signal: controller.signal,
      debounceMs: 20,
    });

    await writeTree(root, "later/agent.json", '{"name": "later"}');
    expect(names(await changes.next())).toEqual(["later"]);

    // Editors save by writing a temporary file and renaming it over the original.
    await writeFile(path.join(root, "later/.agent.json.swp"), '{"name": "saved"}');
    await rename(path.join(root, "later/.agent.json.swp"), path.join(root, "later/agent.json"));
    expect(names(await changes.next())).toEqual(["saved"]);
  });

  it("does not report a touched file whose content is unchanged", async () => {
    const file = await writeTree(root, "a/agent.toml", "# comment\n");
    const changes = recorder();
    let scans = 0;
    let onScan = () => {};
    await watchAgentsDirectory(root, changes.onChange, {
      signal: controller.signal,
      debounceMs: 20,
      pollIntervalMs: 50,
      onScan: () => {
        scans += 1;
        onScan();
      },
    });
    const scansAfter = (count: number) =>
      new Promise<void>((resolve) => {
        onScan = () => {
          if (scans >= count) resolve();
        };
      });
    const later = new Date(Date.now() + 5_000);
    await utimes(file, later, later);
    await writeTree(root, "a/agent.toml", "# another comment, same definition\n");
    await scansAfter(scans + 2);
    expect(changes.results).toEqual([]);
  });

  it("finds changes by periodic rescan when file events are slow", async () => {
    const changes = recorder();
    // A debounce far beyond the test's wait leaves only the periodic rescan to find the change.
    await watchAgentsDirectory(root, changes.onChange, {
      signal: controller.signal,
      debounceMs: 600_000,
      pollIntervalMs: 50,
    });
    await writeTree(root, "polled/agent.toml", "");
    expect(names(await changes.next())).toEqual(["polled"]);
  });

  it("reports a change made since the caller's own scan when given it as initial", async () => {
    const initial = await discoverAgents(root);
    await writeTree(root, "meanwhile/agent.toml", "");
    const changes = recorder();
    const own = await watchAgentsDirectory(root, changes.onChange, {
      signal: controller.signal,
      initial,
    });
    expect(names(own)).toEqual(["meanwhile"]);
    expect(names(await changes.next())).toEqual(["meanwhile"]);
  });

  it("reports a vanished agents directory as empty with a warning, and recovers when it returns", async () => {
    await writeTree(root, "agents/one/agent.toml", "");
    const agentsDir = path.join(root, "agents");
    const changes = recorder();
    await watchAgentsDirectory(agentsDir, changes.onChange, {
      signal: controller.signal,
      debounceMs: 20,
      pollIntervalMs: 100,
    });
    await rm(agentsDir, { recursive: true });
    const gone = await changes.next();
    expect(gone).toEqual({
      agents: [],
      warnings: [`agents directory ${agentsDir} does not exist`],
    });

    await writeTree(root, "agents/two/agent.toml", "");
    expect(names(await changes.next((r) => r.agents.length > 0))).toEqual(["two"]);
    // Watching resumed on the new directory: a further change arrives too.
    await writeTree(root, "agents/three/agent.toml", "");
    expect(names(await changes.next((r) => r.agents.length === 2))).toEqual(["three", "two"]);
  });

  it("passes an error thrown by onChange to onError and keeps watching", async () => {
    const errors: unknown[] = [];
    const changes = recorder();
    let calls = 0;
    await watchAgentsDirectory(
      root,
      (result) => {
        calls += 1;
        changes.onChange(result);
        if (calls === 1) throw new Error("listener bug");
      },
      { signal: controller.signal, debounceMs: 20, onError: (e) => errors.push(e) },
    );
    await writeTree(root, "a/agent.toml", "");
    await changes.next();
    await writeTree(root, "b/agent.toml", "");
    await changes.next((r) => r.agents.length === 2);
    expect(errors).toEqual([new Error("listener bug")]);
  });

  it("rejects with a ConfigError when the agents directory is missing at the start", async () => {
    const missing = path.join(root, "missing");
    await expect(
      watchAgentsDirectory(missing, () => {}, { signal: controller.signal }),
    ).rejects.toBeInstanceOf(ConfigError);
  });

  it("rejects when the signal is already aborted", async () => {
    controller.abort(new Error("stopped"));
    await expect(
      watchAgentsDirectory(root, () => {}, { signal: controller.signal }),
    ).rejects.toThrow("stopped");
  });

  it("releases every timer and file watch on abort", async () => {
    const resources = () =>
      process
        .getActiveResourcesInfo()
        .filter((kind) => kind === "Timeout" || kind === "FSEventWrap").length;
    const before = resources();
    await writeTree(root, "a/agent.toml", "");
    await writeTree(root, "b/agent.toml", "");
    await watchAgentsDirectory(root, () => {}, { signal: controller.signal });
    expect(resources()).toBeGreaterThan(before);
    controller.abort();
    // libuv closes handles asynchronously: give it some turns of the event loop (not time).
    for (let turn = 0; turn < 1000 && resources() > before; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(resources()).toBe(before);
  });
});
