/**
 * The lifecycle reducer over the event sequences that matter (issue 12), with a manual clock:
 * every decision is checked as data (next state, effects), nothing runs.
 */
import { describe, expect, it } from "vitest";
import { heldPort, liveProcess } from "../../src/core/lifecycle-model.ts";
import { Driver, invalidDefinition, validDefinition } from "./lifecycle-driver.ts";

describe("lifecycle reducer: starting", () => {
  it("deploys through slot, lease and spawn, and answers once the first probe passes", () => {
    const d = new Driver();
    const w = d.op("deploy");
    expect(d.last).toEqual([{ type: "reserveSlot" }]);
    d.send({ type: "slotReserved" });
    expect(d.last).toEqual([{ type: "leasePort", fixedPort: 0 }]);
    d.send({ type: "leaseGranted", port: 8100 });
    expect(d.effects("spawn")).toEqual([
      { type: "spawn", generation: 1, port: 8100, definition: { version: "1" } },
    ]);
    // Nothing visible or durable has happened yet.
    expect(d.publicState).toBe("DISCOVERED");
    expect(d.state.desired).toBe("stopped");
    d.send({ type: "spawned", generation: 1, pid: 100, startTimeTicks: 5 });
    expect(d.publicState).toBe("STARTING");
    expect(d.state).toMatchObject({ desired: "running", label: { reason: "START_REQUESTED" } });
    expect(d.has("persist")).toBe(true);
    expect(d.effects("publish")).toEqual([
      { type: "publish", previousState: "DISCOVERED", previousHealth: "UNKNOWN" },
    ]);
    expect(d.effects("probe")[0]).toMatchObject({ generation: 1, port: 8100, path: "/status" });
    expect(d.effects("armTimer")).toEqual([
      { type: "armTimer", timer: "startDeadline", delayMs: 30_000, token: 1 },
    ]);
    expect(d.outcomeOf(w)).toBeUndefined();
    d.send({ type: "probed", generation: 1, ok: true, message: "HTTP 200" });
    expect(d.state).toMatchObject({
      health: "HEALTHY",
      label: { state: "RUNNING", reason: "STARTED" },
    });
    expect(d.outcomeOf(w)).toEqual({ ok: true, killed: false });
    expect(d.effects("cancelTimer").map((e) => e.timer)).toEqual(["startProbe", "startDeadline"]);
    expect(d.effects("armTimer")).toEqual([
      { type: "armTimer", timer: "liveness", delayMs: 30_000, token: 1 },
    ]);
  });

  it("probes again every start interval until the deadline, then fails a manual start", () => {
    const d = new Driver(validDefinition({ startTimeoutMs: 500 }));
    const w = d.op("deploy");
    const g = d.startProcess();
    d.send({ type: "probed", generation: g, ok: false, message: "connection refused" });
    expect(d.effects("armTimer")).toEqual([
      { type: "armTimer", timer: "startProbe", delayMs: 100, token: g },
    ]);
    d.fire("startProbe");
    expect(d.effects("probe")[0]).toMatchObject({ timeoutMs: 400 });
    d.fire("startDeadline");
    expect(d.publicState).toBe("STOPPING");
    expect(d.effects("terminateGroup")).toEqual([
      {
        type: "terminateGroup",
        generation: g,
        pid: 100,
        stopTimeoutMs: 10_000,
        leaderExited: false,
      },
    ]);
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.state.label).toMatchObject({ state: "FAILED", reason: "START_TIMEOUT" });
    expect(d.outcomeOf(w)).toMatchObject({ ok: false, failure: { code: "AGENT_START_TIMEOUT" } });
    expect(d.state.desired).toBe("stopped");
  });

  it("fails a manual start whose process crashes, once its group is gone", () => {
    const d = new Driver();
    const w = d.op("deploy");
    const g = d.startProcess();
    d.exit(g, 7);
    expect(d.state.label).toMatchObject({ state: "STOPPING", reason: "EXITED_DURING_START" });
    expect(d.effects("terminateGroup")[0]).toMatchObject({ leaderExited: true });
    expect(d.outcomeOf(w)).toBeUndefined();
    expect(heldPort(d.phase)).toBe(8100);
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.state.label).toMatchObject({ state: "FAILED", reason: "EXITED_DURING_START" });
    expect(d.outcomeOf(w)).toMatchObject({
      ok: false,
      failure: { code: "AGENT_EXITED_DURING_START", metadata: { exit_code: "7" } },
    });
    expect(d.effects("releasePort")).toHaveLength(1);
    expect(d.effects("releaseSlot")).toHaveLength(1);
    expect(heldPort(d.phase)).toBe(0);
  });

  it("fails at once, without a process, when the command cannot be spawned", () => {
    const d = new Driver();
    const w = d.op("deploy");
    d.send({ type: "slotReserved" });
    d.send({ type: "leaseGranted", port: 8100 });
    d.send({ type: "spawnFailed", generation: 1, reason: "EXECUTABLE_NOT_FOUND", message: "no x" });
    expect(d.state.label).toMatchObject({ state: "FAILED", reason: "EXECUTABLE_NOT_FOUND" });
    expect(d.outcomeOf(w)).toMatchObject({ failure: { code: "AGENT_START_FAILED" } });
    expect(d.state.desired).toBe("stopped");
    expect(d.effects("log")).toEqual([
      {
        type: "log",
        level: "warn",
        message: "the agent could not be started",
        fields: { agent: "a", reason: "EXECUTABLE_NOT_FOUND", error: "no x" },
      },
    ]);
  });

  it("counts the process alive as started when HTTP probing is off", () => {
    const d = new Driver(validDefinition({ healthPath: "" }));
    const w = d.op("deploy");
    d.startProcess();
    expect(d.state.label).toMatchObject({ state: "RUNNING", reason: "STARTED" });
    expect(d.outcomeOf(w)).toEqual({ ok: true, killed: false });
    expect(d.has("probe")).toBe(false);
  });
});

describe("lifecycle reducer: refusals change nothing durable", () => {
  it.each([
    ["slotRefused", "MAX_AGENTS_REACHED"],
    ["leaseRefused", "NO_FREE_PORT"],
    ["leaseRefused", "PORT_UNAVAILABLE"],
  ] as const)("a deploy refused by %s (%s)", (type, code) => {
    const d = new Driver();
    const before = d.state;
    const w = d.op("deploy");
    const failure = { code, message: "no", metadata: {} };
    if (type === "leaseRefused") d.send({ type: "slotReserved" });
    d.send({ type, failure });
    expect(d.outcomeOf(w)).toEqual({ ok: false, failure });
    expect(d.state.label).toEqual(before.label);
    expect(d.state.desired).toBe("stopped");
    expect(d.all.some((e) => e.type === "persist" || e.type === "publish")).toBe(false);
    expect(d.effects("releaseSlot")).toHaveLength(type === "leaseRefused" ? 1 : 0);
  });

  it("a deploy or restart of an invalid agent", () => {
    const d = new Driver(invalidDefinition());
    const w1 = d.op("deploy");
    const w2 = d.op("restart");
    for (const w of [w1, w2]) {
      expect(d.outcomeOf(w)).toMatchObject({ failure: { code: "AGENT_CONFIG_INVALID" } });
    }
    expect(d.all.filter((e) => e.type !== "settle")).toEqual([]);
  });

  it("a restart whose edited definition is invalid leaves the process running", () => {
    const d = new Driver();
    d.op("deploy");
    d.run();
    d.send({ type: "definitionChanged", update: invalidDefinition() });
    const w = d.op("restart");
    expect(d.outcomeOf(w)).toMatchObject({ failure: { code: "AGENT_CONFIG_INVALID" } });
    expect(d.publicState).toBe("RUNNING");
    expect(d.has("terminateGroup")).toBe(false);
  });
});

describe("lifecycle reducer: failures and backoff", () => {
  function crashed(settings = {}) {
    const d = new Driver(validDefinition(settings));
    d.op("deploy");
    const g = d.run();
    d.exit(g, 3);
    return { d, g };
  }

  it("crashes into BACKOFF, reaps the old group, and restarts only when both are done", () => {
    const { d, g } = crashed();
    expect(d.state.label).toMatchObject({ state: "BACKOFF", reason: "EXITED" });
    expect(d.phase).toMatchObject({ kind: "backoff", port: 8100, reap: { generation: g } });
    expect(d.effects("terminateGroup")[0]).toMatchObject({ generation: g, leaderExited: true });
    expect(d.effects("armTimer")).toEqual([
      { type: "armTimer", timer: "backoff", delayMs: 1_000, token: g },
    ]);
    d.fire("backoff");
    // The delay is over but a member of the old group may still hold the port.
    expect(d.has("spawn")).toBe(false);
    expect(d.phase).toMatchObject({ kind: "backoff", due: true });
    d.send({ type: "groupGone", generation: g, killed: true });
    expect(d.effects("spawn")[0]).toMatchObject({ generation: g + 1, port: 8100 });
    expect(d.has("leasePort")).toBe(false); // the port was kept
    d.send({ type: "spawned", generation: g + 1, pid: 101, startTimeTicks: 6 });
    expect(d.state).toMatchObject({
      restartCount: 1,
      label: { state: "STARTING", reason: "AUTO_RESTART" },
    });
  });

  it("shows health UNKNOWN in BACKOFF, where no process is probed (issue 13)", () => {
    const { d } = crashed();
    expect(d.state).toMatchObject({
      health: "UNKNOWN",
      memoryBytes: 0,
      label: { state: "BACKOFF" },
    });
    expect(d.effects("publish")).toEqual([
      { type: "publish", previousState: "RUNNING", previousHealth: "HEALTHY" },
    ]);
  });

  it("records the exit of a process that is being reaped in BACKOFF, and nothing else", () => {
    const d = new Driver(validDefinition({ failureThreshold: 1 }));
    d.op("deploy");
    const g = d.run();
    d.send({ type: "probed", generation: g, ok: false, message: "HTTP 503" });
    // The reason says why; health is UNKNOWN again, since no process is probed in BACKOFF.
    expect(d.state).toMatchObject({
      health: "UNKNOWN",
      label: { state: "BACKOFF", reason: "HEALTH_CHECK_FAILED" },
    });
    expect(d.effects("terminateGroup")[0]).toMatchObject({ leaderExited: false });
    d.exit(g, null, "SIGTERM");
    expect(d.state.lastExit).toMatchObject({ signal: "SIGTERM" });
    expect(d.last.filter((e) => e.type !== "persist")).toEqual([]);
  });

  it("gives up with CRASH_LOOP after a storm of crashes, with the budget", () => {
    const { d } = crashed({ maxRestarts: 2, restartDelayMs: 0 });
    for (let round = 0; round < 2; round++) {
      const reaping = d.phase.kind === "backoff" ? d.phase.reap?.generation : undefined;
      d.fire("backoff");
      d.send({ type: "groupGone", generation: reaping ?? 0, killed: false });
      const next = d.startProcess(200 + round);
      d.send({ type: "probed", generation: next, ok: true, message: "HTTP 200" });
      d.exit(next, 3);
    }
    expect(d.state.label).toMatchObject({ state: "STOPPING", reason: "CRASH_LOOP" });
    const group = d.phase.kind === "stopping" ? d.phase.group.generation : 0;
    d.send({ type: "groupGone", generation: group, killed: false });
    expect(d.state).toMatchObject({
      restartCount: 2,
      desired: "stopped",
      label: { state: "FAILED", reason: "CRASH_LOOP" },
    });
  });

  it("doubles the backoff per restart and restarts at once with restart_delay = 0", () => {
    expect(crashed({ restartDelayMs: 0 }).d.effects("armTimer")[0]).toMatchObject({ delayMs: 0 });
    const { d, g } = crashed();
    d.fire("backoff");
    d.send({ type: "groupGone", generation: g, killed: false });
    const next = d.startProcess(101);
    d.exit(next, 3); // during an automatic start: the policy, not a failed deploy
    expect(d.effects("armTimer")[0]).toMatchObject({ timer: "backoff", delayMs: 2_000 });
  });

  it("resets the restart count at the first healthy probe with stable_after = 0", () => {
    const { d, g } = crashed({ stableAfterMs: 0 });
    d.fire("backoff");
    d.send({ type: "groupGone", generation: g, killed: false });
    const next = d.startProcess(101);
    expect(d.state.restartCount).toBe(1);
    d.send({ type: "probed", generation: next, ok: true, message: "HTTP 200" });
    expect(d.state.restartCount).toBe(0);
  });

  it("treats exit code 0 as the agent stopping itself", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.exit(g, 0);
    expect(d.state.label).toMatchObject({ state: "STOPPING", reason: "EXITED" });
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.state).toMatchObject({
      desired: "stopped",
      label: { state: "STOPPED", reason: "EXITED" },
    });
  });

  it("restarts an agent above its memory limit", () => {
    const d = new Driver(validDefinition({ memoryLimitBytes: 1_000 }));
    d.op("deploy");
    const g = d.run();
    d.fire("liveness");
    expect(d.effects("sampleMemory")).toEqual([{ type: "sampleMemory", generation: g, pid: 100 }]);
    d.send({ type: "memorySampled", generation: g, bytes: 500 });
    expect(d.effects("probe")).toHaveLength(1);
    d.send({ type: "probed", generation: g, ok: true, message: "HTTP 200" });
    d.fire("liveness");
    d.send({ type: "memorySampled", generation: g, bytes: 5_000 });
    // No process in BACKOFF: no memory and no health to show (the reason says why).
    expect(d.state).toMatchObject({
      memoryBytes: 0,
      health: "UNKNOWN",
      label: { state: "BACKOFF", reason: "MEMORY_LIMIT_EXCEEDED" },
    });
  });

  it("keeps an unhealthy agent without auto_restart, probing on", () => {
    const d = new Driver(validDefinition({ autoRestart: false, failureThreshold: 2 }));
    d.op("deploy");
    const g = d.run();
    d.send({ type: "probed", generation: g, ok: false, message: "HTTP 503" });
    expect(d.state.health).toBe("HEALTHY");
    d.send({ type: "probed", generation: g, ok: false, message: "HTTP 503" });
    expect(d.state).toMatchObject({ health: "UNHEALTHY", label: { state: "RUNNING" } });
    expect(d.effects("armTimer")[0]).toMatchObject({ timer: "liveness" });
  });

  it("drops the results of a process the agent has moved on from", () => {
    const { d, g } = crashed();
    d.send({ type: "probed", generation: g, ok: true, message: "late" });
    d.send({ type: "timerFired", timer: "liveness", token: g });
    d.send({ type: "memorySampled", generation: g, bytes: 1 });
    expect(d.publicState).toBe("BACKOFF");
    expect(d.last).toEqual([]);
  });
});

describe("lifecycle reducer: stopping", () => {
  it("lets an undeploy interrupt a start, failing the waiting deploy as superseded", () => {
    const d = new Driver();
    const deploy = d.op("deploy");
    const g = d.startProcess();
    const undeploy = d.op("undeploy");
    expect(d.state.label).toMatchObject({ state: "STOPPING", reason: "STOP_REQUESTED" });
    expect(d.outcomeOf(deploy)).toMatchObject({ failure: { code: "OPERATION_SUPERSEDED" } });
    expect(d.effects("cancelTimer").map((e) => e.timer)).toEqual(["startProbe", "startDeadline"]);
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.state).toMatchObject({
      desired: "stopped",
      label: { state: "STOPPED", reason: "STOPPED" },
    });
    expect(d.outcomeOf(undeploy)).toEqual({ ok: true, killed: false });
  });

  it("runs an undeploy that came while the port was being leased after the spawn", () => {
    const d = new Driver();
    const deploy = d.op("deploy");
    d.send({ type: "slotReserved" });
    const undeploy = d.op("undeploy");
    expect(d.last).toEqual([]);
    d.send({ type: "leaseGranted", port: 8100 });
    d.send({ type: "spawned", generation: d.spawnGeneration(), pid: 100, startTimeTicks: 1 });
    expect(d.effects("requeue")).toEqual([
      { type: "requeue", operation: { type: "undeploy", waiter: undeploy } },
    ]);
    d.send({ type: "undeploy", waiter: undeploy });
    expect(d.publicState).toBe("STOPPING");
    expect(d.outcomeOf(deploy)).toMatchObject({ failure: { code: "OPERATION_SUPERSEDED" } });
  });

  it("waits in an undeploy during BACKOFF until the old group is gone before releasing the port", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.exit(g, 3);
    const joined = d.op("deploy");
    const w = d.op("undeploy");
    expect(d.outcomeOf(joined)).toMatchObject({ failure: { code: "OPERATION_SUPERSEDED" } });
    expect(d.state.label).toMatchObject({ state: "STOPPING" });
    expect(d.has("releasePort")).toBe(false);
    expect(d.has("terminateGroup")).toBe(false); // the reap already under way is waited for
    expect(d.outcomeOf(w)).toBeUndefined();
    d.send({ type: "groupGone", generation: g, killed: true });
    expect(d.effects("releasePort")).toHaveLength(1);
    expect(d.state.label.state).toBe("STOPPED");
    expect(d.outcomeOf(w)).toEqual({ ok: true, killed: true });
  });

  it("stops at once in BACKOFF when the old group is already gone", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.exit(g, 3);
    d.send({ type: "groupGone", generation: g, killed: false });
    const w = d.op("undeploy");
    expect(d.state.label).toMatchObject({ state: "STOPPED", reason: "STOPPED" });
    expect(d.outcomeOf(w)).toEqual({ ok: true, killed: false });
    expect(d.effects("cancelTimer")).toEqual([{ type: "cancelTimer", timer: "backoff" }]);
  });

  it("answers every undeploy that joins a stop, with whether SIGKILL was needed", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    const first = d.op("undeploy");
    const second = d.op("undeploy");
    expect(d.effects("terminateGroup")).toHaveLength(0);
    d.send({ type: "groupGone", generation: g, killed: true });
    expect(d.state.label).toMatchObject({ state: "STOPPED", reason: "KILLED_AFTER_GRACE" });
    expect([d.outcomeOf(first), d.outcomeOf(second)]).toEqual([
      { ok: true, killed: true },
      { ok: true, killed: true },
    ]);
  });

  it("sends SIGKILL at once with stop_timeout = 0", () => {
    const d = new Driver(validDefinition({ stopTimeoutMs: 0 }));
    d.op("deploy");
    d.run();
    d.op("undeploy");
    expect(d.effects("terminateGroup")[0]).toMatchObject({ stopTimeoutMs: 0 });
  });

  it("keeps the desired state across a server shutdown", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.op("shutdown");
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.state).toMatchObject({ desired: "running", label: { state: "STOPPED" } });
  });

  it("starts again after an undeploy when a deploy comes during the stop", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.op("undeploy");
    const again = d.op("deploy");
    d.send({ type: "groupGone", generation: g, killed: false });
    // Port and slot are kept for the new process.
    expect(d.effects("spawn")[0]).toMatchObject({ port: 8100 });
    d.send({ type: "spawned", generation: d.spawnGeneration(), pid: 101, startTimeTicks: 2 });
    d.send({ type: "probed", generation: g + 1, ok: true, message: "HTTP 200" });
    expect(d.outcomeOf(again)).toEqual({ ok: true, killed: false });
  });
});

describe("lifecycle reducer: restarts", () => {
  it("answers a storm of restarts with one new process", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    const storm = [d.op("restart"), d.op("restart"), d.op("deploy"), d.op("restart")];
    expect(d.all.filter((e) => e.type === "terminateGroup")).toHaveLength(1);
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.state.label.state).toBe("STOPPED");
    expect(d.effects("spawn")).toHaveLength(1);
    const next = d.spawnGeneration();
    d.send({ type: "spawned", generation: next, pid: 101, startTimeTicks: 2 });
    d.send({ type: "probed", generation: next, ok: true, message: "HTTP 200" });
    for (const w of storm) expect(d.outcomeOf(w)).toEqual({ ok: true, killed: false });
    expect(d.state).toMatchObject({ restartCount: 0, label: { state: "RUNNING" } });
  });

  it("moves to a changed fixed port on Restart", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.send({ type: "definitionChanged", update: validDefinition({ fixedPort: 9000 }, "2") });
    d.op("restart");
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.effects("leasePort")).toEqual([{ type: "leasePort", fixedPort: 9000 }]);
    d.send({ type: "leaseGranted", port: 9000 });
    expect(d.effects("spawn")[0]).toMatchObject({ port: 9000, definition: { version: "2" } });
  });

  it("fails a Restart whose new fixed port is taken, telling the caller why", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.send({ type: "definitionChanged", update: validDefinition({ fixedPort: 9000 }) });
    const w = d.op("restart");
    d.send({ type: "groupGone", generation: g, killed: false });
    const failure = { code: "PORT_UNAVAILABLE" as const, message: "held", metadata: {} };
    d.send({ type: "leaseRefused", failure });
    expect(d.outcomeOf(w)).toEqual({ ok: false, failure });
    expect(d.state).toMatchObject({
      desired: "stopped",
      label: { state: "FAILED", reason: "PORT_UNAVAILABLE" },
    });
    expect(d.effects("releasePort")).toHaveLength(1);
  });

  it("restarts in BACKOFF once the old group is gone, resetting the count", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.exit(g, 3);
    const w = d.op("restart");
    expect(d.state.label).toMatchObject({ state: "STOPPING", reason: "RESTART_REQUESTED" });
    d.send({ type: "groupGone", generation: g, killed: false });
    const next = d.spawnGeneration();
    d.send({ type: "spawned", generation: next, pid: 101, startTimeTicks: 2 });
    d.send({ type: "probed", generation: next, ok: true, message: "HTTP 200" });
    expect(d.outcomeOf(w)).toEqual({ ok: true, killed: false });
    expect(d.state.restartCount).toBe(0);
  });

  it("makes a deploy in BACKOFF wait for the coming restart", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.exit(g, 3);
    const w = d.op("deploy");
    expect(d.outcomeOf(w)).toBeUndefined();
    d.send({ type: "groupGone", generation: g, killed: false });
    d.fire("backoff");
    const next = d.spawnGeneration();
    d.send({ type: "spawned", generation: next, pid: 101, startTimeTicks: 2 });
    expect(d.outcomeOf(w)).toBeUndefined();
    d.send({ type: "probed", generation: next, ok: true, message: "HTTP 200" });
    expect(d.outcomeOf(w)).toEqual({ ok: true, killed: false });
  });
});

describe("lifecycle reducer: definition edits", () => {
  it("applies an edit at once to an agent that is not live", () => {
    const d = new Driver();
    d.send({ type: "definitionChanged", update: validDefinition({}, "2") });
    expect(d.state.definitions.inEffect?.definition.version).toBe("2");
    expect(d.has("publish")).toBe(false);
    d.send({ type: "definitionChanged", update: invalidDefinition() });
    expect(d.state.label).toMatchObject({ state: "INVALID", reason: "AGENT_CONFIG_INVALID" });
    d.send({ type: "definitionChanged", update: validDefinition({}, "3") });
    expect(d.state.label).toMatchObject({ state: "DISCOVERED", reason: "DEFINITION_FIXED" });
  });

  it("keeps a running agent's definition until its next start, and marks a removal", () => {
    const d = new Driver();
    d.op("deploy");
    d.run();
    d.send({ type: "definitionChanged", update: validDefinition({}, "2") });
    expect(d.state.definitions.inEffect?.definition.version).toBe("1");
    expect(d.has("publish")).toBe(false);
    d.send({ type: "definitionChanged", update: { kind: "removed" } });
    expect(d.publicState).toBe("RUNNING");
    expect(d.effects("publish")).toHaveLength(1);
  });

  it("starts an automatic restart with the edited definition, a fixed port moving the lease", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.exit(g, 3);
    d.send({ type: "definitionChanged", update: validDefinition({ fixedPort: 9100 }, "2") });
    d.send({ type: "groupGone", generation: g, killed: false });
    d.fire("backoff");
    expect(d.effects("leasePort")).toEqual([{ type: "leasePort", fixedPort: 9100 }]);
    d.send({ type: "leaseGranted", port: 9100 });
    expect(d.effects("spawn")[0]).toMatchObject({ port: 9100, definition: { version: "2" } });
  });

  it("starts an automatic restart with the last valid definition while the edit is invalid", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.exit(g, 3);
    d.send({ type: "definitionChanged", update: invalidDefinition() });
    d.send({ type: "groupGone", generation: g, killed: false });
    d.fire("backoff");
    expect(d.effects("spawn")[0]).toMatchObject({ definition: { version: "1" } });
  });

  it("shows an invalid edit once a stop has ended", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.op("undeploy");
    d.send({ type: "definitionChanged", update: invalidDefinition() });
    expect(d.publicState).toBe("STOPPING");
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.effects("publish")).toEqual([
      { type: "publish", previousState: "STOPPING", previousHealth: "HEALTHY" },
    ]);
    expect(d.state.label).toMatchObject({ state: "INVALID" });
    expect(heldPort(d.phase)).toBe(0);
  });

  it("refuses a deploy that meets an invalid edit after a stop", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.op("undeploy");
    const w = d.op("deploy");
    d.send({ type: "definitionChanged", update: invalidDefinition() });
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.outcomeOf(w)).toMatchObject({ failure: { code: "AGENT_CONFIG_INVALID" } });
    expect(d.state.label.state).toBe("INVALID");
    expect(d.effects("releasePort")).toHaveLength(1);
    expect(d.effects("releaseSlot")).toHaveLength(1);
  });
});

describe("lifecycle reducer: adoption, detach and supervisor errors", () => {
  it("adopts a live process as RUNNING, reason ADOPTED, and probes it at once", () => {
    const d = new Driver();
    d.send({ type: "adopt", pid: 300, startTimeTicks: 9, port: 8105, startTimeMs: 5 });
    expect(d.state).toMatchObject({
      desired: "running",
      startTimeMs: 5,
      label: { state: "RUNNING", reason: "ADOPTED" },
    });
    expect(liveProcess(d.phase)).toMatchObject({ pid: 300, adopted: true });
    expect(d.effects("armTimer")[0]).toMatchObject({ timer: "liveness", delayMs: 0 });
    expect(d.has("persist")).toBe(true);
  });

  it("keeps the command line a process was started with, for the state file (issue 13)", () => {
    const d = new Driver();
    d.op("deploy");
    d.send({ type: "slotReserved" });
    d.send({ type: "leaseGranted", port: 8100 });
    const command = ["/usr/bin/node", "/srv/a/agent.mjs"];
    d.send({
      type: "spawned",
      generation: d.spawnGeneration(),
      pid: 100,
      startTimeTicks: 5,
      command,
    });
    expect(liveProcess(d.phase)).toMatchObject({ pid: 100, command });
    const adopted = new Driver();
    adopted.send({
      type: "adopt",
      pid: 300,
      startTimeTicks: 9,
      command,
      port: 8105,
      startTimeMs: 5,
    });
    expect(liveProcess(adopted.phase)).toMatchObject({ pid: 300, command, adopted: true });
  });

  it("detaches: waiting callers are told, timers end, the process is left alone, later events are ignored", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.startProcess();
    const w = 1;
    d.send({ type: "detach" });
    expect(d.outcomeOf(w)).toMatchObject({ failure: { code: "SERVER_SHUTTING_DOWN" } });
    expect(d.effects("forgetProcess")).toEqual([{ type: "forgetProcess", generation: g }]);
    expect(d.has("terminateGroup")).toBe(false);
    d.exit(g, 1);
    expect(d.last).toEqual([]);
    expect(d.state).toMatchObject({ desired: "running", label: { state: "STARTING" } });
  });

  it("ends FAILED with INTERNAL_ERROR when the old group cannot be terminated", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.exit(g, 3);
    d.send({ type: "groupStopFailed", generation: g, message: "EPERM" });
    expect(d.state.label).toMatchObject({ state: "FAILED", reason: "INTERNAL_ERROR" });
    expect(d.state.label.message).toContain("EPERM");
    expect(d.effects("log")[0]).toMatchObject({ level: "error", fields: { agent: "a" } });
    expect(heldPort(d.phase)).toBe(0);
  });

  it("stops a running agent and fails it on a supervisor error", () => {
    const d = new Driver();
    d.op("deploy");
    const g = d.run();
    d.send({ type: "internalError", message: "probe: boom" });
    expect(d.state.label).toMatchObject({ state: "STOPPING", reason: "INTERNAL_ERROR" });
    d.send({ type: "groupGone", generation: g, killed: false });
    expect(d.state.label).toMatchObject({ state: "FAILED", reason: "INTERNAL_ERROR" });
  });

  it("ends a process spawned after its start was abandoned", () => {
    const d = new Driver();
    d.send({ type: "spawned", generation: 7, pid: 400, startTimeTicks: 1 });
    expect(d.effects("terminateGroup")).toEqual([
      { type: "terminateGroup", generation: 7, pid: 400, stopTimeoutMs: 0, leaderExited: false },
    ]);
    expect(d.publicState).toBe("DISCOVERED");
  });
});
