/**
 * Automatic restarts on real processes: what BACKOFF holds (the old process group until it is
 * gone, the port, the latest definition for the next start), and operations that meet it.
 */
import { readFile } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { AgentDefinition } from "../../src/config/agent-definition.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import type { AgentRegistry } from "../../src/supervisor/agent-registry.ts";
import { createHarness, faultAgentToml, type Harness, markFileEnv } from "./harness.ts";

let harness: Harness | undefined;

afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

/** Crashes (exit 3) 600 ms after listening: after its first healthy probe, even under load. */
const CRASHING = { FAULT: "crash-after", CRASH_AFTER_MS: "600" };

/** Re-discovers `name` with its definition changed by `edit`. */
function edit(
  registry: AgentRegistry,
  name: string,
  change: (def: AgentDefinition) => AgentDefinition,
): void {
  const def = registry.runner(name).definition;
  if (def === undefined) throw new Error(`${name} has no definition`);
  registry.applyDiscovery([{ kind: "valid", definition: change(def) }]);
}

describe("automatic restarts", () => {
  it("keeps the port of an agent undeployed in BACKOFF until its old process group is gone", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", {
        env: { ...CRASHING, FAULT: "crash-after,stubborn-grandchild" },
        deployment: { restart_delay: 20, stop_timeout: 1 },
      }),
    });
    const first = await harness.registry.deploy("a");
    await harness.waitFor("a", (s) => s.state === "BACKOFF");
    // The leader is dead; its grandchild ignores SIGTERM and may still hold the port.
    expect(isGroupAlive(first.pid)).toBe(true);
    const stopped = await harness.registry.undeploy("a");
    expect(stopped).toMatchObject({ state: "STOPPED", port: 0, pid: 0 });
    expect(isGroupAlive(first.pid)).toBe(false);
  });

  it("makes a deploy that finds the agent in BACKOFF wait until it is running and healthy", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: CRASHING, deployment: { restart_delay: 0.5 } }),
    });
    const first = await harness.registry.deploy("a");
    await harness.waitFor("a", (s) => s.state === "BACKOFF");
    const again = await harness.registry.deploy("a");
    expect(again).toMatchObject({ state: "RUNNING", health: "HEALTHY", restartCount: 1 });
    expect(again.pid).not.toBe(first.pid);
  });

  it("starts an automatic restart with the latest definition, so a fix ends a crash loop", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: CRASHING, deployment: { restart_delay: 0.3 } }),
    });
    const { registry } = harness;
    await registry.deploy("a");
    await harness.waitFor("a", (s) => s.state === "BACKOFF" || s.restartCount > 0);
    edit(registry, "a", (def) => ({
      ...def,
      version: "2.0.0",
      deployment: { ...def.deployment, env: {} },
    }));
    const settled = await harness.waitFor(
      "a",
      (s) => s.state === "FAILED" || (s.version === "2.0.0" && s.health === "HEALTHY"),
    );
    expect(settled).toMatchObject({ state: "RUNNING", version: "2.0.0" });
    expect(settled.restartCount).toBeGreaterThan(0);
  });

  it("keeps restarting with the last valid definition while the edited one is invalid", async () => {
    harness = await createHarness(
      { a: faultAgentToml("a", { env: { ...CRASHING, ...markFileEnv("a") } }) },
      { maxRestarts: 2 },
    );
    const { registry } = harness;
    const first = await registry.deploy("a");
    await harness.waitFor("a", (s) => s.state === "BACKOFF");
    registry.applyDiscovery([
      {
        kind: "invalid",
        name: "a",
        configPath: first.configPath,
        dir: harness.agentsDir,
        message: `${first.configPath}: deployment.port: must be an integer`,
        warnings: [],
      },
    ]);
    // Both restarts of the budget still happen; once given up, the invalid definition shows.
    const invalid = await harness.waitFor("a", (s) => s.state === "INVALID");
    expect(await harness.starts("a")).toHaveLength(3);
    expect(invalid).toMatchObject({ port: 0, pid: 0, stateReason: "AGENT_CONFIG_INVALID" });
  });

  it("restarts on the changed fixed port when asked to restart", async () => {
    harness = await createHarness({ a: faultAgentToml("a", { deployment: { port: 0 } }) });
    const { registry, basePort } = harness;
    const first = await registry.deploy("a");
    expect(first.port).toBe(basePort);
    edit(registry, "a", (def) => ({
      ...def,
      deployment: { ...def.deployment, port: basePort + 7 },
    }));
    const restarted = await registry.restart("a");
    expect(restarted).toMatchObject({ state: "RUNNING", health: "HEALTHY", port: basePort + 7 });
    expect(isGroupAlive(first.pid)).toBe(false);
  });

  it("restarts at once with restart_delay = 0 and still gives up after max_restarts", async () => {
    harness = await createHarness(
      {
        a: faultAgentToml("a", {
          env: { ...CRASHING, ...markFileEnv("a") },
          deployment: { restart_delay: 0 },
        }),
      },
      { maxRestarts: 2 },
    );
    await harness.registry.deploy("a");
    const failed = await harness.waitFor("a", (s) => s.state === "FAILED");
    expect(failed).toMatchObject({ stateReason: "CRASH_LOOP", restartCount: 2, port: 0 });
    expect(await harness.starts("a")).toHaveLength(3);
  });

  it("sends SIGKILL at once, without SIGTERM first, with stop_timeout = 0", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: { FAULT: "ignore-sigterm" }, deployment: { stop_timeout: 0 } }),
    });
    const running = await harness.registry.deploy("a");
    const stopped = await harness.registry.undeploy("a");
    expect(stopped).toMatchObject({ state: "STOPPED", stateReason: "KILLED_AFTER_GRACE" });
    expect(isGroupAlive(running.pid)).toBe(false);
    // The fixture logs every SIGTERM it ignores: there was none.
    const log = await readFile(running.logPath, "utf8");
    expect(log).toContain(`READY ${running.port}`);
    expect(log).not.toContain("SIGTERM ignored");
  });
});
