/**
 * The Prometheus metrics of SPEC §9, kept up to date by events rather than recomputed per
 * scrape (DESIGN.md "Metrics from events"): the agent series move when the backend publishes a
 * change (`AgentBackend.events`), the call counters when a call wrapper reports its end
 * (`CallObserver`), the probe histogram and memory gauge when the supervisor's platform reports
 * a probe or a memory reading (`observeRunnerPlatform`). A scrape only serializes numbers, plus
 * prom-client's standard `process_*` and `nodejs_*` collectors, which read the process itself.
 *
 * Labels are bounded: the agent name (and its version, state, or the RPC's service, method and
 * code), never a pid. Series of an agent whose definition is gone are removed with it.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type LabelValues,
  Registry,
} from "prom-client";
import type { AgentBackend } from "../core/agent-backend.ts";
import type { AgentStateName } from "../core/agent-state.ts";
import type { AgentChange, AgentStatus } from "../core/agent-status.ts";
import type { CallEnd, CallObserver } from "../rpc/call-observer.ts";

/** `state` label values: SPEC §9's lower-case short names, in lifecycle order. */
const STATES: readonly AgentStateName[] = [
  "DISCOVERED",
  "STARTING",
  "RUNNING",
  "BACKOFF",
  "STOPPING",
  "STOPPED",
  "FAILED",
  "INVALID",
];

/**
 * `grpc_code` label values, as go-grpc-prometheus writes them (Go's `codes.Code.String()`), so
 * existing gRPC dashboards and alerts work unchanged.
 */
const GRPC_CODE_NAMES: readonly string[] = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

/**
 * Probe latency buckets, seconds: loopback probes take about a millisecond, a probe times out
 * after `health_timeout` (10 s by default). Nine buckets: each costs a series per agent.
 */
export const PROBE_BUCKETS_SECONDS: readonly number[] = [
  0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10,
];

/** The families whose series only move through this class: their text is kept between scrapes. */
const AGENT_FAMILIES = [
  "atoll_agent_info",
  "atoll_agent_state",
  "atoll_agent_healthy",
  "atoll_agent_restarts_total",
  "atoll_agent_memory_bytes",
  "atoll_agent_start_time_seconds",
] as const;
const PROBE_FAMILY = "atoll_health_probe_duration_seconds";
const MEMORY_FAMILY = "atoll_agent_memory_bytes";
const CALL_FAMILIES = ["atoll_watch_streams", "grpc_server_handled_total"] as const;

const WATCH_METHOD = "WatchHealth";

export interface AtollMetricsOptions {
  /**
   * The services whose methods get a zero `grpc_server_handled_total{grpc_code="OK"}` series
   * from the start (so `rate()` works before the first call), by full name and method names.
   */
  readonly services?: readonly {
    readonly typeName: string;
    readonly methods: readonly { readonly name: string }[];
  }[];
  /** Collect the standard `process_*` and `nodejs_*` metrics (default true). */
  readonly defaultMetrics?: boolean;
}

/** What the metrics remember of one agent, to touch only the series that changed. */
interface AgentSeries {
  version: string;
  state: AgentStateName | undefined;
  pid: number;
  port: number;
}

type AgentLabel = "agent";

/**
 * The server's metrics registry. Also the `CallObserver` of both transports, and the receiver of
 * probe timings and memory readings. Call `close()` to stop following the backend.
 */
export class AtollMetrics implements CallObserver {
  readonly registry = new Registry();
  readonly #info: Gauge<"agent" | "version">;
  readonly #state: Gauge<"agent" | "state">;
  readonly #healthy: Gauge<AgentLabel>;
  readonly #restarts: Counter<AgentLabel>;
  readonly #memory: Gauge<AgentLabel>;
  readonly #startTime: Gauge<AgentLabel>;
  readonly #probeDuration: Histogram<AgentLabel>;
  readonly #watchStreams: Gauge;
  readonly #handled: Counter<"grpc_service" | "grpc_method" | "grpc_code">;
  readonly #agents = new Map<string, AgentSeries>();
  /** Live processes and leased ports by agent: probes and memory readings name only these. */
  readonly #byPid = new Map<number, string>();
  readonly #byPort = new Map<number, string>();
  #unsubscribe: (() => void) | undefined;
  /**
   * The text of each of our families at the last scrape, and the families changed since: a
   * scrape serializes only those (prom-client writes every series anew otherwise, and 100
   * agents' state and histogram series are most of the cost). The process_* and nodejs_*
   * collectors read the process, so they are always written afresh.
   */
  readonly #text = new Map<string, string>();
  readonly #dirty = new Set<string>([...AGENT_FAMILIES, PROBE_FAMILY, ...CALL_FAMILIES]);

  constructor(options: AtollMetricsOptions) {
    const registers = [this.registry];
    this.#info = new Gauge({
      name: "atoll_agent_info",
      help: "Always 1: the agent and the version of its definition.",
      labelNames: ["agent", "version"],
      registers,
    });
    this.#state = new Gauge({
      name: "atoll_agent_state",
      help: "1 for the agent's current lifecycle state, 0 for the others.",
      labelNames: ["agent", "state"],
      registers,
    });
    this.#healthy = new Gauge({
      name: "atoll_agent_healthy",
      help: "1 when the agent's last health probe passed, else 0.",
      labelNames: ["agent"],
      registers,
    });
    this.#restarts = new Counter({
      name: "atoll_agent_restarts_total",
      help: "Automatic restarts of the agent (backoff to starting) since the server started.",
      labelNames: ["agent"],
      registers,
    });
    this.#memory = new Gauge({
      name: "atoll_agent_memory_bytes",
      help: "Resident memory of the agent's process group at its last measurement, bytes.",
      labelNames: ["agent"],
      registers,
    });
    this.#startTime = new Gauge({
      name: "atoll_agent_start_time_seconds",
      help: "Start time of the agent's current process, seconds since the Unix epoch.",
      labelNames: ["agent"],
      registers,
    });
    this.#probeDuration = new Histogram({
      name: "atoll_health_probe_duration_seconds",
      help: "Duration of the agent's HTTP health probes (start and liveness), seconds.",
      labelNames: ["agent"],
      buckets: [...PROBE_BUCKETS_SECONDS],
      registers,
    });
    this.#watchStreams = new Gauge({
      name: "atoll_watch_streams",
      help: "Open WatchHealth streams, gRPC and Connect.",
      registers,
    });
    this.#handled = new Counter({
      name: "grpc_server_handled_total",
      help: "DeploymentService calls completed on the server, gRPC and Connect, by status code.",
      labelNames: ["grpc_service", "grpc_method", "grpc_code"],
      registers,
    });
    this.#watchStreams.set(0);
    for (const service of options.services ?? []) {
      for (const method of service.methods) {
        this.#handled.inc(
          { grpc_service: service.typeName, grpc_method: method.name, grpc_code: "OK" },
          0,
        );
      }
    }
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /**
   * Follows `backend`'s agents from now on: their current status, then every change. Separate
   * from the constructor because the local backend is built with a platform these metrics
   * observe. Throws when already following one.
   */
  follow(backend: AgentBackend): void {
    if (this.#unsubscribe !== undefined) throw new Error("the metrics already follow a backend");
    // Subscribe before reading the list, so no change in between is missed.
    this.#unsubscribe = backend.events.subscribe((change) => this.#onChange(change));
    for (const status of backend.list()) this.#apply(status);
  }

  /** The exposition content type of `scrape()`'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The metrics in the Prometheus text format (as `Registry.metrics()` writes them). */
  async scrape(): Promise<string> {
    const parts = await Promise.all(
      this.registry.getMetricsAsArray().map(async ({ name }) => {
        const cached = this.#text.get(name);
        if (!this.#dirty.has(name) && cached !== undefined) return cached;
        const owned = this.#dirty.delete(name) || cached !== undefined;
        // A change during the await marks the family dirty again: the next scrape has it.
        const text = await this.registry.getSingleMetricAsString(name);
        if (owned) this.#text.set(name, text);
        return text;
      }),
    );
    return `${parts.join("\n\n")}\n`;
  }

  #changed(...families: readonly string[]): void {
    for (const family of families) this.#dirty.add(family);
  }

  /** Stops following the backend. */
  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  // --- CallObserver -------------------------------------------------------------------------

  started(method: DescMethod): CallEnd {
    const watch = method.name === WATCH_METHOD;
    if (watch) {
      this.#watchStreams.inc();
      this.#changed(...CALL_FAMILIES);
    }
    const service = method.parent.typeName;
    return (code) => {
      if (watch) this.#watchStreams.dec();
      this.#count(service, method.name, code);
    };
  }

  refused(path: string, code: number): void {
    const [, service = "", method = ""] = path.split("/");
    this.#count(service, method, code);
  }

  #count(service: string, method: string, code: number): void {
    this.#changed(...CALL_FAMILIES);
    this.#handled.inc({
      grpc_service: service,
      grpc_method: method,
      grpc_code: GRPC_CODE_NAMES[code] ?? String(code),
    });
  }

  // --- platform observations -----------------------------------------------------------------

  /** One health probe of whatever agent holds `port`, taking `seconds`. */
  observeProbe(port: number, seconds: number): void {
    const agent = this.#byPort.get(port);
    if (agent === undefined) return;
    this.#probeDuration.observe({ agent }, seconds);
    this.#changed(PROBE_FAMILY);
  }

  /** One memory reading of the process group led by `pid`. */
  observeMemory(pid: number, bytes: number): void {
    const agent = this.#byPid.get(pid);
    if (agent === undefined) return;
    this.#memory.set({ agent }, bytes);
    this.#changed(MEMORY_FAMILY);
  }

  // --- agent series --------------------------------------------------------------------------

  #onChange(change: AgentChange): void {
    if (change.kind === "removed") {
      this.#remove(change.name);
      return;
    }
    this.#apply(change.status);
    // Only the runner's own backoff timer moves BACKOFF to STARTING: an automatic restart.
    if (change.previousState === "BACKOFF" && change.status.state === "STARTING") {
      this.#restarts.inc({ agent: change.name });
    }
  }

  #apply(status: AgentStatus): void {
    this.#changed(...AGENT_FAMILIES);
    const agent = status.name;
    let series = this.#agents.get(agent);
    if (series === undefined) {
      series = { version: status.version, state: undefined, pid: 0, port: 0 };
      this.#agents.set(agent, series);
      this.#info.set({ agent, version: status.version }, 1);
      this.#restarts.inc({ agent }, 0);
    } else if (series.version !== status.version) {
      this.#info.remove({ agent, version: series.version });
      this.#info.set({ agent, version: status.version }, 1);
      series.version = status.version;
    }
    if (series.state !== status.state) {
      for (const state of STATES) {
        // Only the two series that changed, once every state has its series.
        if (series.state !== undefined && state !== series.state && state !== status.state) {
          continue;
        }
        this.#state.set({ agent, state: state.toLowerCase() }, state === status.state ? 1 : 0);
      }
      series.state = status.state;
    }
    this.#healthy.set({ agent }, status.health === "HEALTHY" ? 1 : 0);
    this.#memory.set({ agent }, status.memoryBytes);
    const labels: LabelValues<AgentLabel> = { agent };
    if (status.pid !== 0 && status.startTimeMs !== undefined) {
      this.#startTime.set(labels, status.startTimeMs / 1000);
    } else {
      this.#startTime.remove(labels);
    }
    this.#index(this.#byPid, series, "pid", status.pid, agent);
    this.#index(this.#byPort, series, "port", status.port, agent);
  }

  #index(
    table: Map<number, string>,
    series: AgentSeries,
    key: "pid" | "port",
    value: number,
    agent: string,
  ): void {
    if (series[key] === value) return;
    if (series[key] !== 0 && table.get(series[key]) === agent) table.delete(series[key]);
    if (value !== 0) table.set(value, agent);
    series[key] = value;
  }

  #remove(agent: string): void {
    const series = this.#agents.get(agent);
    if (series === undefined) return;
    this.#changed(...AGENT_FAMILIES, PROBE_FAMILY);
    this.#agents.delete(agent);
    if (this.#byPid.get(series.pid) === agent) this.#byPid.delete(series.pid);
    if (this.#byPort.get(series.port) === agent) this.#byPort.delete(series.port);
    this.#info.remove({ agent, version: series.version });
    for (const state of STATES) this.#state.remove({ agent, state: state.toLowerCase() });
    for (const metric of [
      this.#healthy,
      this.#restarts,
      this.#memory,
      this.#startTime,
      this.#probeDuration,
    ]) {
      metric.remove({ agent });
    }
  }
}
