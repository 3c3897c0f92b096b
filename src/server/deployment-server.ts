/**
 * `DeploymentServer` (SPEC §10): the deployment server as a class that a program starts and
 * stops with itself, and the one place where the server is composed (the `serve` command is a
 * thin shell over it). Lifecycle, composition and errors: docs/embedding.md.
 */
import { isConfigError } from "../config/config-error.ts";
import { configFields } from "../config/server-config.ts";
import type { ServerConfig } from "../config/server-config-types.ts";
import { readAuthToken } from "../config/token-file.ts";
import type { AgentBackend } from "../core/agent-backend.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import { DeployError } from "../core/errors.ts";
import type { AtollMetrics } from "../http/metrics.ts";
import { observeRunnerPlatform } from "../http/observed-platform.ts";
import { packageVersion } from "../platform/package-version.ts";
import { type WatchEvent, type WatchOptions, watchAgents } from "./agent-watch.ts";
import { openLocalBackend } from "./local-backend.ts";
import { type DeploymentServerOptions, ServerSetup, setupFromOptions } from "./server-options.ts";
import { type BackendPart, BackendStartFailed, type ListenerPart } from "./server-parts.ts";

/** How long calls in flight get to finish during a stop before connections are cut, ms. */
const DRAIN_GRACE_MS = 5_000;

/** Options of {@link DeploymentServer.stop}. */
export interface StopOptions {
  /**
   * Leave every agent running, for the next server on the same `stateDir` to adopt (an upgrade
   * without downtime), instead of stopping them. Default false.
   */
  readonly detach?: boolean | undefined;
  /** Aborting it kills the agents still within their stop grace at once (SIGKILL). */
  readonly force?: AbortSignal | undefined;
}

/** What {@link DeploymentServer.stop} reports. */
export interface StopResult {
  /** True when an agent did not stop within its `stop_timeout` and was killed. */
  readonly killedAgents: boolean;
}

type Phase = "new" | "starting" | "running" | "disabled" | "stopping" | "stopped";

/** A promise that never settles: the default `force` of a stop. */
const NEVER = new AbortController().signal;

/**
 * The deployment server of one host, embedded in a program: discovers the agent definitions of
 * `agentsDirectory`, supervises the agents as processes, and, with `listen`, serves the gRPC API
 * that the CLI and other clients use. Without `listen` it opens no socket.
 *
 * One instance runs once: `start()`, the operations, `stop()`; to run again, create another.
 * Every operation rejects with {@link DeployError}, whose `reason` is the `ErrorInfo` reason a gRPC
 * client would receive (`AGENT_NOT_FOUND`, `AGENT_START_TIMEOUT`, ...), and with
 * `SERVER_NOT_STARTED` before `start()` has resolved (or when `enabled` is false) and
 * `SERVER_SHUTTING_DOWN` once `stop()` was called.
 *
 * @example
 * const server = new DeploymentServer({ agentsDirectory: "./agents", stateDir: "./state" });
 * await server.start();
 * const agent = await server.startAgent("greeter"); // RUNNING and healthy, agent.port leased
 * await server.stop();
 */
export class DeploymentServer {
  readonly #setup: ServerSetup;
  #phase: Phase = "new";
  #starting: Promise<void> | undefined;
  #stopping: Promise<StopResult> | undefined;
  #backend: BackendPart | undefined;
  readonly #listeners: ListenerPart[] = [];
  /** With `httpListen`: the metrics, fed by the backend's events and both transports' calls. */
  #metrics: AtollMetrics | undefined;
  /** Aborted when `stop()` begins: ends the iterations of `watch()`. */
  readonly #stopped = new AbortController();

  /**
   * Checks the options; opens nothing (that is `start()`).
   * @throws DeployError INVALID_ARGUMENT naming the option: unknown, of the wrong type, out of
   *   range, or inconsistent with another (`maxPort` below `basePort`, `tlsKey` without
   *   `tlsCert`, ...).
   */
  constructor(options?: DeploymentServerOptions);
  /** @internal The CLI's way in: a configuration it loaded from the file, environment and flags. */
  constructor(setup: ServerSetup);
  constructor(options: DeploymentServerOptions | ServerSetup = {}) {
    this.#setup = options instanceof ServerSetup ? options : setupFromOptions(options);
  }

  /** The effective configuration (paths absolute, durations in ms); frozen. */
  get config(): ServerConfig {
    return this.#setup.loaded.config;
  }

  /**
   * The bound gRPC address once started with `listen` (`127.0.0.1:43117` for `127.0.0.1:0`,
   * `unix:/path`); undefined otherwise.
   */
  get address(): string | undefined {
    return this.#listeners.find((listener) => listener.kind === "grpc")?.address;
  }

  /**
   * The base URL of the HTTP listener once started with `httpListen` (`http://127.0.0.1:50052`;
   * the dashboard is at `/`, the metrics at `/metrics`); undefined otherwise.
   */
  get httpUrl(): string | undefined {
    return this.#listeners.find((listener) => listener.kind === "http")?.address;
  }

  /**
   * Starts the server: scans the agents directory, listens (with `listen`), adopts the agents of
   * a previous run on the same `stateDir` that are still alive and starts those that should run
   * (previously deployed, or `autostart`), then watches the agents directory. Resolves once it
   * serves. Calling it again returns the same promise (until `stop()`). With `enabled: false` it
   * starts nothing.
   * @throws DeployError INVALID_ARGUMENT when the agents directory is missing or unreadable, the
   *   token of `authTokenFile` is unusable, or the kubeconfig cannot be loaded;
   *   SERVER_START_FAILED when `listen` is busy or unusable, a TLS file cannot be read, or the
   *   cluster does not answer (nothing is left running either way); SERVER_SHUTTING_DOWN after
   *   `stop()`.
   */
  start(): Promise<void> {
    if (this.#stopping !== undefined) {
      return Promise.reject(
        new DeployError("SERVER_SHUTTING_DOWN", "the server was stopped; create a new one"),
      );
    }
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    this.#phase = "starting";
    const { loaded, logger } = this.#setup;
    const { config } = loaded;
    for (const warning of loaded.warnings) logger.warn(warning);
    logger.info("effective configuration", {
      config: configFields(config),
      sources: loaded.sources,
      configFile: loaded.configFile ?? null,
    });
    if (!config.enabled) {
      this.#phase = "disabled";
      logger.info("the server is disabled by config (enabled = false)");
      return;
    }

    const authToken = this.#readToken();
    this.#metrics = await this.#createMetrics();
    const backend = await this.#openBackend();
    this.#metrics?.follow(backend.backend);
    try {
      await this.#openListeners(backend.backend, authToken);
    } catch (error) {
      await Promise.all(this.#listeners.splice(0).map((listener) => listener.close(0)));
      this.#metrics?.close();
      await backend.abandon();
      this.#phase = "stopped";
      throw new DeployError(
        "SERVER_START_FAILED",
        error instanceof Error ? error.message : String(error),
        {},
        { cause: error },
      );
    }

    this.#backend = backend;
    await backend.run();
    this.#phase = "running";
    logger.info("listening", {
      backend: config.backend,
      address: this.address ?? null,
      ...(this.httpUrl !== undefined && { http: this.httpUrl }),
      listeners: Object.fromEntries(this.#listeners.map((l) => [l.kind, l.address])),
      agents: backend.backend.list().length,
    });
  }

  /** The bearer token, read once and strictly: a token that could never authenticate stops the start. */
  #readToken(): string | undefined {
    const { config } = this.#setup.loaded;
    if (config.authTokenFile === undefined) return undefined;
    try {
      const read = readAuthToken(config.authTokenFile);
      for (const warning of read.warnings) this.#setup.logger.warn(warning);
      return read.token;
    } catch (error) {
      this.#phase = "stopped";
      if (isConfigError(error)) {
        throw new DeployError("INVALID_ARGUMENT", error.message, {}, { cause: error });
      }
      throw error;
    }
  }

  /**
   * The backend part. The one place that chooses which AgentBackend runs the agents (DESIGN.md,
   * "Backends, not branches"); the Kubernetes part is loaded on demand, so a local server never
   * loads the Kubernetes client.
   */
  async #openBackend(): Promise<BackendPart> {
    const { loaded, logger, clock, env } = this.#setup;
    const { config } = loaded;
    try {
      if (config.backend === "kubernetes") {
        const { openKubernetesBackend } = await import("./kubernetes-backend.ts");
        return await openKubernetesBackend({ config, clock, logger, version: packageVersion() });
      }
      const metrics = this.#metrics;
      return await openLocalBackend({
        config,
        clock,
        logger,
        env,
        // The metrics observe the probes and memory readings of the agents' platform.
        ...(metrics !== undefined && {
          observePlatform: (platform) => observeRunnerPlatform(platform, metrics),
        }),
      });
    } catch (error) {
      this.#phase = "stopped";
      if (isConfigError(error)) {
        throw new DeployError("INVALID_ARGUMENT", error.message, {}, { cause: error });
      }
      if (error instanceof BackendStartFailed) {
        throw new DeployError("SERVER_START_FAILED", error.message, {}, { cause: error });
      }
      throw error;
    }
  }

  /**
   * The listener parts, each serving `backend`, started only when their address is configured
   * (an embedded server opens no socket unasked). Every listener started is in `#listeners`,
   * also when a later one fails.
   */
  async #openListeners(backend: AgentBackend, authToken: string | undefined): Promise<void> {
    const { loaded, logger, clock } = this.#setup;
    const { config } = loaded;
    if (config.listen === undefined) return;
    const { startGrpcListener } = await import("./grpc-listener.ts");
    const grpc = await startGrpcListener({
      address: config.listen,
      config,
      authToken,
      backend,
      clock,
      logger,
      observer: this.#metrics,
    });
    this.#listeners.push(grpc);
    // SPEC §9, after gRPC: it mounts the gRPC listener's handler set, with the same token and TLS.
    if (config.httpListen !== undefined) {
      const { startHttpListener } = await import("./http-listener.ts");
      this.#listeners.push(
        await startHttpListener({
          address: config.httpListen,
          config,
          authToken,
          api: grpc.api,
          metrics: this.#metrics,
          logger,
        }),
      );
    }
  }

  /**
   * With `httpListen`: the metrics of SPEC §9. Loaded only then, so a server without an HTTP
   * listener never loads prom-client.
   * @throws DeployError INVALID_ARGUMENT for `httpListen` without `listen`.
   */
  async #createMetrics(): Promise<AtollMetrics | undefined> {
    const { config } = this.#setup.loaded;
    if (config.httpListen === undefined) return undefined;
    if (config.listen === undefined) {
      this.#phase = "stopped";
      throw new DeployError(
        "INVALID_ARGUMENT",
        "DeploymentServer option httpListen needs listen: the HTTP listener serves the gRPC listener's handlers",
      );
    }
    const [{ AtollMetrics }, { DeploymentService }] = await Promise.all([
      import("../http/metrics.ts"),
      import("../../gen/atoll/deployment/v1/deployment_service_pb.ts"),
    ]);
    return new AtollMetrics({ services: [DeploymentService] });
  }

  /**
   * Stops the server: refuses new calls and ends open watches, stops every agent in parallel
   * (SIGTERM to its process group, SIGKILL after its `stop_timeout`), saves the state (agents
   * that were deployed start again at the next `start()` on this `stateDir`) and closes the
   * listeners. Waits for a `start()` in progress first. Calling it again returns the same
   * promise; before `start()` it only marks the server stopped.
   */
  stop(options: StopOptions = {}): Promise<StopResult> {
    this.#stopping ??= this.#stop(options);
    return this.#stopping;
  }

  async #stop(options: StopOptions): Promise<StopResult> {
    await this.#starting?.catch(() => undefined);
    this.#phase = "stopping";
    this.#stopped.abort();
    const backend = this.#backend;
    const { logger } = this.#setup;
    if (backend === undefined) {
      this.#phase = "stopped";
      return { killedAgents: false };
    }
    for (const listener of this.#listeners) listener.beginDrain();
    const mode = options.detach === true ? "detach" : "stop";
    logger.info(
      mode === "detach"
        ? "detaching: agents keep running for the next daemon to adopt"
        : "shutting down",
    );
    const { killed } = await backend.close(mode, options.force ?? NEVER);
    await Promise.all(this.#listeners.map((listener) => listener.close(DRAIN_GRACE_MS)));
    this.#metrics?.close();
    this.#phase = "stopped";
    logger.info("stopped", { killedAgents: killed });
    return { killedAgents: killed };
  }

  /** The backend while running; the error of the phase otherwise. */
  #serving(): AgentBackend {
    if (this.#phase === "running" && this.#backend !== undefined) return this.#backend.backend;
    if (this.#phase === "stopping" || this.#phase === "stopped") {
      throw new DeployError("SERVER_SHUTTING_DOWN", "the server is shutting down");
    }
    throw new DeployError(
      "SERVER_NOT_STARTED",
      this.#phase === "disabled"
        ? "the server is disabled by config (enabled = false)"
        : "the server is not started: await start() first",
    );
  }

  /**
   * Reads the agents directory again now (the server also watches it and applies changes within
   * seconds) and resolves with every agent, sorted by name. A changed definition applies at the
   * agent's next start.
   * @throws DeployError INVALID_ARGUMENT when the agents directory is gone or unreadable.
   */
  async discoverAgents(): Promise<AgentStatus[]> {
    const backend = this.#serving();
    try {
      await this.#backend?.rescan();
    } catch (error) {
      if (isConfigError(error)) {
        throw new DeployError("INVALID_ARGUMENT", error.message, {}, { cause: error });
      }
      throw error;
    }
    return backend.list();
  }

  /**
   * Starts the agent and resolves once it is RUNNING and healthy (SPEC §6 `Deploy`); an agent
   * already running resolves at once.
   * @throws DeployError AGENT_NOT_FOUND, INVALID_AGENT_NAME, AGENT_CONFIG_INVALID,
   *   MAX_AGENTS_REACHED, NO_FREE_PORT, PORT_UNAVAILABLE, AGENT_START_FAILED,
   *   AGENT_EXITED_DURING_START, AGENT_START_TIMEOUT, OPERATION_SUPERSEDED.
   */
  async startAgent(name: string): Promise<AgentStatus> {
    return this.#serving().deploy(name);
  }

  /**
   * Stops the agent gracefully and resolves once it is STOPPED (SPEC §6 `Undeploy`); an agent
   * not running resolves at once.
   * @throws DeployError AGENT_NOT_FOUND, INVALID_AGENT_NAME.
   */
  async stopAgent(name: string): Promise<AgentStatus> {
    return this.#serving().undeploy(name);
  }

  /**
   * Stops the agent if it runs, starts it again on the same port and waits like `startAgent`;
   * resets its restart count.
   * @throws DeployError as `startAgent`.
   */
  async restartAgent(name: string): Promise<AgentStatus> {
    return this.#serving().restart(name);
  }

  /**
   * The agent's full status now (SPEC §6 `GetStatus`).
   * @throws DeployError AGENT_NOT_FOUND, INVALID_AGENT_NAME.
   */
  async getAgentStatus(name: string): Promise<AgentStatus> {
    return this.#serving().status(name);
  }

  /** Every known agent, sorted by name (SPEC §6 `ListAgents`). */
  async listAgents(): Promise<AgentStatus[]> {
    return this.#serving().list();
  }

  /**
   * The changes of the agents' state and health (SPEC §6 `WatchHealth`): first a SNAPSHOT event
   * per selected agent and a SNAPSHOT_COMPLETE marker, then a CHANGE (or REMOVED) event per
   * change, with monotonic revisions. The iteration ends (without an error) when
   * `options.signal` aborts or `stop()` is called; leaving the loop early ends it too.
   * @throws DeployError (from the iteration) SERVER_NOT_STARTED, AGENT_NOT_FOUND for a name in
   *   `names`, WATCHER_TOO_SLOW when the loop fell more than about 2,000 changes behind.
   */
  watch(options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    const clock = this.#setup.clock;
    const stopped = this.#stopped.signal;
    const backend = (): AgentBackend => this.#serving();
    return {
      [Symbol.asyncIterator]: () =>
        watchAgents(backend(), () => clock.now(), options, stopped)[Symbol.asyncIterator](),
    };
  }
}
