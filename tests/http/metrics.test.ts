import { afterEach, describe, expect, it } from "vitest";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { AgentBackend } from "../../src/core/agent-backend.ts";
import type { AgentStateName } from "../../src/core/agent-state.ts";
import type { AgentStatus } from "../../src/core/agent-status.ts";
import { AtollMetrics } from "../../src/http/metrics.ts";
import { EventHub } from "../../src/supervisor/event-hub.ts";
import { type MetricFamily, parsePrometheusText, samples, value } from "./prometheus.ts";

function status(name: string, overrides: Partial<AgentStatus> = {}): AgentStatus {
  return {
    name,
    state: "DISCOVERED",
    health: "UNKNOWN",
    port: 0,
    pid: 0,
    restartCount: 0,
    maxRestarts: 3,
    configPath: `/agents/${name}/agent.toml`,
    version: "1.0.0",
    description: "",
    capabilities: [],
    startTimeMs: undefined,
    stateReason: "",
    stateMessage: "",
    stateSinceMs: 0,
    lastExit: undefined,
    nextRestartAtMs: undefined,
    lastHealthCheckMs: undefined,
    healthMessage: "",
    memoryBytes: 0,
    warnings: [],
    definitionRemoved: false,
    logPath: `/logs/${name}.log`,
    host: "node-1",
    instance: "",
    ...overrides,
  };
}

/** A backend that is only its change feed and list: what the metrics read. */
class FeedBackend {
  readonly events = new EventHub();
  readonly #statuses = new Map<string, AgentStatus>();

  constructor(initial: AgentStatus[]) {
    for (const s of initial) this.#statuses.set(s.name, s);
  }

  list(): AgentStatus[] {
    return [...this.#statuses.values()];
  }

  /** Publishes a change of `name` to `next` (or its removal). */
  change(name: string, next: Partial<AgentStatus> | "removed"): void {
    const previous = this.#statuses.get(name) ?? status(name);
    const updated = next === "removed" ? previous : { ...previous, ...next };
    if (next === "removed") this.#statuses.delete(name);
    else this.#statuses.set(name, updated);
    this.events.publish({
      kind: next === "removed" ? "removed" : "change",
      name,
      previousState: previous.state,
      previousHealth: previous.health,
      status: updated,
      atMs: 0,
    });
  }

  asBackend(): AgentBackend {
    return this as unknown as AgentBackend;
  }
}

const open: AtollMetrics[] = [];
afterEach(() => {
  for (const metrics of open.splice(0)) metrics.close();
});

function follow(backend: FeedBackend, defaultMetrics = false): AtollMetrics {
  const metrics = new AtollMetrics({ services: [DeploymentService], defaultMetrics });
  metrics.follow(backend.asBackend());
  open.push(metrics);
  return metrics;
}

async function scrape(metrics: AtollMetrics): Promise<MetricFamily[]> {
  return parsePrometheusText(await metrics.scrape());
}

const STATES: AgentStateName[] = ["STARTING", "RUNNING"];

describe("AtollMetrics", () => {
  it("writes SPEC §9's names in text a Prometheus parser accepts, with process_ and nodejs_ metrics", async () => {
    const backend = new FeedBackend([status("a"), status("b", { state: "INVALID", version: "" })]);
    const metrics = follow(backend, true);
    expect(metrics.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = await scrape(metrics);
    const types = Object.fromEntries(families.map((f) => [f.name, f.type]));
    expect(types).toMatchObject({
      atoll_agent_info: "gauge",
      atoll_agent_state: "gauge",
      atoll_agent_healthy: "gauge",
      atoll_agent_restarts: "counter",
      atoll_agent_memory_bytes: "gauge",
      atoll_health_probe_duration_seconds: "histogram",
      atoll_watch_streams: "gauge",
      grpc_server_handled: "counter",
      atoll_agent_start_time_seconds: "gauge",
    });
    expect(families.some((f) => f.name.startsWith("process_") && f.samples.length > 0)).toBe(true);
    expect(families.some((f) => f.name.startsWith("nodejs_") && f.samples.length > 0)).toBe(true);
    expect(value(families, "atoll_agent_info", { agent: "a", version: "1.0.0" })).toBe(1);
    expect(value(families, "atoll_agent_state", { agent: "b", state: "invalid" })).toBe(1);
    expect(samples(families, "atoll_agent_state", { agent: "a" })).toHaveLength(8);
    expect(value(families, "atoll_agent_restarts_total", { agent: "a" })).toBe(0);
    expect(value(families, "atoll_watch_streams")).toBe(0);
    expect(
      value(families, "grpc_server_handled_total", {
        grpc_service: "atoll.deployment.v1.DeploymentService",
        grpc_method: "Deploy",
        grpc_code: "OK",
      }),
    ).toBe(0);
    for (const family of families) {
      for (const sample of family.samples) expect(Object.keys(sample.labels)).not.toContain("pid");
    }
  });

  it("moves the agent series on each change event and counts only automatic restarts", async () => {
    const backend = new FeedBackend([status("a")]);
    const metrics = follow(backend);
    const running = { state: "RUNNING" as const, health: "HEALTHY" as const, port: 8100, pid: 41 };
    // A manual start, then a crash and an automatic restart.
    backend.change("a", { state: "STARTING", port: 8100, pid: 41, startTimeMs: 1_700_000_000_000 });
    backend.change("a", { ...running, startTimeMs: 1_700_000_000_000, memoryBytes: 5000 });
    backend.change("a", { state: "BACKOFF", health: "UNKNOWN", pid: 0, memoryBytes: 0 });
    backend.change("a", { state: "STARTING", pid: 42, startTimeMs: 1_700_000_100_000 });
    backend.change("a", { ...running, pid: 42, startTimeMs: 1_700_000_100_000 });
    let families = await scrape(metrics);
    expect(value(families, "atoll_agent_restarts_total", { agent: "a" })).toBe(1);
    for (const state of STATES) {
      expect(value(families, "atoll_agent_state", { agent: "a", state: state.toLowerCase() })).toBe(
        state === "RUNNING" ? 1 : 0,
      );
    }
    expect(value(families, "atoll_agent_healthy", { agent: "a" })).toBe(1);
    expect(value(families, "atoll_agent_start_time_seconds", { agent: "a" })).toBe(1_700_000_100);

    // A manual stop and Deploy is no automatic restart; stopped, there is no start time.
    backend.change("a", { state: "STOPPING" });
    backend.change("a", { state: "STOPPED", health: "UNKNOWN", pid: 0, port: 0 });
    families = await scrape(metrics);
    expect(samples(families, "atoll_agent_start_time_seconds", { agent: "a" })).toEqual([]);
    expect(value(families, "atoll_agent_healthy", { agent: "a" })).toBe(0);
    backend.change("a", { state: "STARTING", pid: 43, port: 8100 });
    families = await scrape(metrics);
    expect(value(families, "atoll_agent_restarts_total", { agent: "a" })).toBe(1);
    expect(value(families, "atoll_agent_state", { agent: "a", state: "stopped" })).toBe(0);
    expect(value(families, "atoll_agent_state", { agent: "a", state: "starting" })).toBe(1);
  });

  it("puts probe timings and memory readings on the agent holding the port and process group", async () => {
    const backend = new FeedBackend([status("a"), status("b")]);
    const metrics = follow(backend);
    backend.change("a", { state: "STARTING", port: 8100, pid: 41 });
    backend.change("b", { state: "STARTING", port: 8101, pid: 51 });
    // A scrape in between: what it wrote is kept, and must not hide what comes after.
    expect(samples(await scrape(metrics), "atoll_health_probe_duration_seconds_count")).toEqual([]);
    metrics.observeProbe(8100, 0.002);
    metrics.observeProbe(8100, 0.3);
    metrics.observeProbe(8101, 0.004);
    metrics.observeProbe(9999, 1); // nobody's port: ignored
    metrics.observeMemory(51, 123_456);
    metrics.observeMemory(77, 1); // nobody's process: ignored
    const families = await scrape(metrics);
    expect(value(families, "atoll_health_probe_duration_seconds_count", { agent: "a" })).toBe(2);
    expect(
      value(families, "atoll_health_probe_duration_seconds_bucket", { agent: "a", le: "0.005" }),
    ).toBe(1);
    expect(value(families, "atoll_health_probe_duration_seconds_sum", { agent: "a" })).toBeCloseTo(
      0.302,
    );
    expect(value(families, "atoll_health_probe_duration_seconds_count", { agent: "b" })).toBe(1);
    expect(value(families, "atoll_agent_memory_bytes", { agent: "b" })).toBe(123_456);
    expect(value(families, "atoll_agent_memory_bytes", { agent: "a" })).toBe(0);
  });

  it("drops a removed agent's series and follows a new version", async () => {
    const backend = new FeedBackend([status("a"), status("b")]);
    const metrics = follow(backend);
    backend.change("a", { version: "2.0.0" });
    backend.change("b", "removed");
    const families = await scrape(metrics);
    expect(
      samples(families, "atoll_agent_info", { agent: "a" }).map((s) => s.labels.version),
    ).toEqual(["2.0.0"]);
    for (const family of families) {
      expect(family.samples.filter((s) => s.labels.agent === "b")).toEqual([]);
    }
  });

  it("counts calls by service, method and code, and the open watch streams", async () => {
    const metrics = follow(new FeedBackend([]));
    const method = (name: string) => {
      const found = DeploymentService.methods.find((m) => m.name === name);
      if (found === undefined) throw new Error(name);
      return found;
    };
    const watch = metrics.started(method("WatchHealth"));
    const second = metrics.started(method("WatchHealth"));
    expect(value(await scrape(metrics), "atoll_watch_streams")).toBe(2);
    watch(1);
    second(14);
    metrics.started(method("Deploy"))(0);
    metrics.started(method("Deploy"))(9);
    metrics.refused("/atoll.deployment.v1.DeploymentService/ListAgents", 16);
    const families = await scrape(metrics);
    const handled = (grpc_method: string, grpc_code: string) =>
      value(families, "grpc_server_handled_total", {
        grpc_service: "atoll.deployment.v1.DeploymentService",
        grpc_method,
        grpc_code,
      });
    expect(value(families, "atoll_watch_streams")).toBe(0);
    expect(handled("WatchHealth", "Canceled")).toBe(1);
    expect(handled("WatchHealth", "Unavailable")).toBe(1);
    expect(handled("Deploy", "OK")).toBe(1);
    expect(handled("Deploy", "FailedPrecondition")).toBe(1);
    expect(handled("ListAgents", "Unauthenticated")).toBe(1);
  });
});
