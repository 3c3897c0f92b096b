import os from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { isDeployError } from "../../src/core/errors.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { createHarness, faultAgentToml, type Harness, markFileEnv } from "./harness.ts";

let harness: Harness | undefined;

afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

async function deployError(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the operation to fail");
}

describe("agent runner on real processes", () => {
  it("deploys an agent on the first port of the range and reports it running and healthy", async () => {
    harness = await createHarness({ alpha: faultAgentToml("alpha") });
    const status = await harness.registry.deploy("alpha");
    expect(status).toMatchObject({ state: "RUNNING", health: "HEALTHY", port: harness.basePort });
    expect(status.pid).toBeGreaterThan(0);
    // Agent.host is this machine for local agents; instance is a Kubernetes pod name only.
    expect(status).toMatchObject({ host: os.hostname(), instance: "" });
    const stopped = await harness.registry.undeploy("alpha");
    expect(stopped).toMatchObject({ state: "STOPPED", port: 0, pid: 0, stateReason: "STOPPED" });
    expect(isGroupAlive(status.pid)).toBe(false);
  });

  it("hands out one frozen status object per change, so encoders can compare by identity", async () => {
    harness = await createHarness({ alpha: faultAgentToml("alpha") });
    const before = harness.registry.status("alpha");
    expect(harness.registry.status("alpha")).toBe(before);
    expect(Object.isFrozen(before)).toBe(true);
    const running = await harness.registry.deploy("alpha");
    expect(running).not.toBe(before);
    expect(harness.registry.status("alpha")).toBe(harness.registry.status("alpha"));
    await harness.registry.undeploy("alpha");
  });

  it("leases ports sequentially and reuses a released port", async () => {
    harness = await createHarness({
      a: faultAgentToml("a"),
      b: faultAgentToml("b"),
      c: faultAgentToml("c"),
    });
    const { registry, basePort } = harness;
    expect((await registry.deploy("a")).port).toBe(basePort);
    expect((await registry.deploy("b")).port).toBe(basePort + 1);
    await registry.undeploy("a");
    expect((await registry.deploy("c")).port).toBe(basePort);
  });

  it("treats a second deploy of a running agent as a no-op", async () => {
    harness = await createHarness({ a: faultAgentToml("a", { env: markFileEnv("a") }) });
    const first = await harness.registry.deploy("a");
    const second = await harness.registry.deploy("a");
    expect(second.pid).toBe(first.pid);
    expect(await harness.starts("a")).toHaveLength(1);
  });

  it("spawns once when many deploys of one agent arrive together", async () => {
    harness = await createHarness({ a: faultAgentToml("a", { env: markFileEnv("a") }) });
    const results = await Promise.all(
      Array.from({ length: 8 }, () => harness?.registry.deploy("a")),
    );
    expect(new Set(results.map((s) => s?.pid)).size).toBe(1);
    expect(await harness.starts("a")).toHaveLength(1);
  });

  // Crashes come CRASH_AFTER_MS after the agent listens: long enough for a start probe (every
  // 100 ms) to see it healthy even on a loaded machine, since a crash before that is a failed
  // start (EXITED_DURING_START), another rule. 100 ms failed under a full parallel run.
  it("restarts a crashed agent after backoff on the same port", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: { FAULT: "crash-after", CRASH_AFTER_MS: "600" } }),
    });
    const first = await harness.registry.deploy("a");
    const restarted = await harness.waitFor(
      "a",
      (s) => s.restartCount === 1 && s.state === "RUNNING" && s.health === "HEALTHY",
    );
    expect(restarted.pid).not.toBe(first.pid);
    expect(restarted.port).toBe(first.port);
    expect(restarted.lastExit).toMatchObject({ code: 3, signal: null });
  });

  it("gives up with CRASH_LOOP once the restart budget is spent", async () => {
    harness = await createHarness(
      { a: faultAgentToml("a", { env: { FAULT: "crash-after", CRASH_AFTER_MS: "600" } }) },
      { maxRestarts: 2 },
    );
    await harness.registry.deploy("a");
    const failed = await harness.waitFor("a", (s) => s.state === "FAILED");
    expect(failed).toMatchObject({ stateReason: "CRASH_LOOP", restartCount: 2, port: 0, pid: 0 });
  });

  it("marks an agent that exits with code 0 as stopped and does not restart it", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: { FAULT: "exit-zero-after", CRASH_AFTER_MS: "600" } }),
    });
    await harness.registry.deploy("a");
    const stopped = await harness.waitFor("a", (s) => s.state === "STOPPED");
    expect(stopped).toMatchObject({ stateReason: "EXITED", restartCount: 0, port: 0 });
  });

  it("fails a deploy whose process exits during start with AGENT_EXITED_DURING_START", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: { FAULT: "crash-at-start", EXIT_CODE: "7" } }),
    });
    const error = await deployError(harness.registry.deploy("a"));
    expect(isDeployError(error, "AGENT_EXITED_DURING_START")).toBe(true);
    expect(String(error)).toContain("exit code 7");
    expect(harness.registry.status("a")).toMatchObject({
      state: "FAILED",
      stateReason: "EXITED_DURING_START",
      port: 0,
    });
  });

  it("fails a deploy that is not healthy within start_timeout and kills the process", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", {
        env: { FAULT: "never-healthy" },
        deployment: { start_timeout: 0.5, stop_timeout: 0.5 },
      }),
    });
    const error = await deployError(harness.registry.deploy("a"));
    expect(error).toMatchObject({ code: "AGENT_START_TIMEOUT" });
    const status = harness.registry.status("a");
    expect(status).toMatchObject({ state: "FAILED", stateReason: "START_TIMEOUT", pid: 0 });
  });

  it("restarts an agent whose liveness probes fail with HEALTH_CHECK_FAILED", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: { FAULT: "fail-after", FAIL_AFTER_MS: "300" } }),
    });
    const first = await harness.registry.deploy("a");
    const restarted = await harness.waitFor(
      "a",
      (s) => s.restartCount >= 1 && s.pid !== first.pid && s.pid !== 0,
    );
    expect(restarted.restartCount).toBeGreaterThanOrEqual(1);
    expect(isGroupAlive(first.pid)).toBe(false);
  });

  it("kills an agent that ignores SIGTERM, and its grandchild, after the grace", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", {
        env: { FAULT: "ignore-sigterm,grandchild" },
        deployment: { stop_timeout: 0.5 },
      }),
    });
    const running = await harness.registry.deploy("a");
    const stopped = await harness.registry.undeploy("a");
    expect(stopped).toMatchObject({ state: "STOPPED", stateReason: "KILLED_AFTER_GRACE" });
    expect(isGroupAlive(running.pid)).toBe(false);
  });

  it("fails with EXECUTABLE_NOT_FOUND when the command does not exist", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", {
        deployment: { command: '["/nonexistent/agent-binary", "--port", "{port}"]' },
      }),
    });
    const error = await deployError(harness.registry.deploy("a"));
    expect(error).toMatchObject({ code: "AGENT_START_FAILED" });
    expect(harness.registry.status("a")).toMatchObject({
      state: "FAILED",
      stateReason: "EXECUTABLE_NOT_FOUND",
      port: 0,
    });
  });

  it("refuses to start more than max_agents agents, even when asked together", async () => {
    harness = await createHarness(
      { a: faultAgentToml("a"), b: faultAgentToml("b"), c: faultAgentToml("c") },
      { maxAgents: 2 },
    );
    const results = await Promise.allSettled(
      ["a", "b", "c"].map((n) => harness?.registry.deploy(n)),
    );
    const refused = results.filter((r) => r.status === "rejected");
    expect(refused).toHaveLength(1);
    expect(isDeployError((refused[0] as PromiseRejectedResult).reason, "MAX_AGENTS_REACHED")).toBe(
      true,
    );
  });

  it("restarts an agent over its memory limit with MEMORY_LIMIT_EXCEEDED", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", {
        env: { FAULT: "alloc", ALLOC_MB: "200" },
        resources: 'memory_limit = "100MB"',
      }),
    });
    await harness.registry.deploy("a");
    const backoff = await harness.waitFor(
      "a",
      (s) => s.state === "BACKOFF" || s.stateReason === "MEMORY_LIMIT_EXCEEDED",
    );
    expect(backoff.stateReason).toBe("MEMORY_LIMIT_EXCEEDED");
  });

  it("restart keeps the port and resets the restart count", async () => {
    harness = await createHarness({ a: faultAgentToml("a") });
    const first = await harness.registry.deploy("a");
    const again = await harness.registry.restart("a");
    expect(again).toMatchObject({ state: "RUNNING", port: first.port, restartCount: 0 });
    expect(again.pid).not.toBe(first.pid);
  });

  it("stays healthy while the agent floods its output into the log file", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: { FAULT: "flood", FLOOD_BYTES: String(20 * 1024 * 1024) } }),
    });
    const status = await harness.registry.deploy("a");
    expect(status).toMatchObject({ state: "RUNNING", health: "HEALTHY" });
  });

  it("reports an unknown agent and a hostile name precisely", () => {
    return createHarness({}).then((h) => {
      harness = h;
      expect(() => h.registry.status("nope")).toThrowError(/not found/);
      expect(() => h.registry.status("../etc")).toThrowError(/must match/);
    });
  });

  it("honours a fixed port and refuses it with PORT_UNAVAILABLE when another agent holds it", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { deployment: { port: 0 } }),
      b: faultAgentToml("b", { deployment: { port: 1 } }),
    });
    const a = await harness.registry.deploy("a");
    // Rewrite b's fixed port to a's port through a fresh discovery.
    const { registry } = harness;
    const def = registry.runner("b").definition;
    if (def === undefined) throw new Error("b has no definition");
    registry.applyDiscovery([
      { kind: "valid", definition: registry.runner("a").definition ?? def },
      {
        kind: "valid",
        definition: { ...def, deployment: { ...def.deployment, port: a.port } },
      },
    ]);
    const error = await deployError(registry.deploy("b"));
    expect(error).toMatchObject({ code: "PORT_UNAVAILABLE" });
    expect(registry.status("b")).toMatchObject({ state: "DISCOVERED", port: 0 });
  });

  it("times out the start of an agent listening on the wrong port", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", {
        env: { FAULT: "wrong-port" },
        deployment: { start_timeout: 0.6, stop_timeout: 0.5 },
      }),
    });
    const error = await deployError(harness.registry.deploy("a"));
    expect(error).toMatchObject({ code: "AGENT_START_TIMEOUT" });
    expect(harness.registry.status("a")).toMatchObject({ state: "FAILED", port: 0, pid: 0 });
  });

  it("lets an undeploy interrupt a slow start, failing the waiting deploy as superseded", async () => {
    harness = await createHarness({
      a: faultAgentToml("a", { env: { FAULT: "slow-start", START_DELAY_MS: "5000" } }),
    });
    const deploying = deployError(harness.registry.deploy("a"));
    await harness.waitFor("a", (s) => s.state === "STARTING");
    const stopped = await harness.registry.undeploy("a");
    expect(stopped).toMatchObject({ state: "STOPPED", pid: 0, port: 0 });
    expect(await deploying).toMatchObject({ code: "OPERATION_SUPERSEDED" });
  });

  it("survives a storm of concurrent operations on one agent and ends consistent", async () => {
    harness = await createHarness({ a: faultAgentToml("a", { env: markFileEnv("a") }) });
    const { registry } = harness;
    const ops = Array.from({ length: 30 }, (_, i) => {
      const op = ["deploy", "restart", "undeploy"][i % 3] as "deploy" | "restart" | "undeploy";
      return registry[op]("a").catch((error: unknown) => error);
    });
    await Promise.all(ops);
    const final = await registry.deploy("a");
    expect(final).toMatchObject({ state: "RUNNING", health: "HEALTHY" });
    const live = (await harness.starts("a"))
      .map((line) => Number(line.split(" ")[0]))
      .filter((pid) => isGroupAlive(pid));
    expect(live).toEqual([final.pid]);
  });
});
