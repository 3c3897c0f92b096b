import { mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { watchAgentsDirectory } from "../config/agents-watcher.ts";
import { isConfigError } from "../config/config-error.ts";
import { discoverAgents } from "../config/discovery.ts";
import { describeConfig, loadServerConfig } from "../config/server-config.ts";
import type { ServerConfig } from "../config/server-config-types.ts";
import { readAuthToken } from "../config/token-file.ts";
import { type AgentBackend, withPackages } from "../core/agent-backend.ts";
import { systemClock } from "../core/clock.ts";
import { createJsonLogger, type Logger } from "../core/logger.ts";
import { type HttpServer, startHttpServer } from "../http/http-server.ts";
import { AtollMetrics } from "../http/metrics.ts";
import { observeRunnerPlatform } from "../http/observed-platform.ts";
import { DEFAULT_UI_DIRECTORY } from "../http/static-assets.ts";
import { AgentCatalog } from "../packages/agent-catalog.ts";
import { PackageLayout } from "../packages/package-layout.ts";
import { PackageStore } from "../packages/package-store.ts";
import { agentLogPath } from "../platform/log-file.ts";
import { OutputKeeper } from "../platform/output-keeper.ts";
import { PortAllocator } from "../platform/port-allocator.ts";
import { StateFile } from "../platform/state-file.ts";
import { startRpcServer } from "../rpc/server.ts";
import { AgentRegistry } from "../supervisor/agent-registry.ts";
import { SlotPool } from "../supervisor/agent-slots.ts";
import { restoreState, StateSaver } from "../supervisor/daemon-state.ts";
import { EventHub } from "../supervisor/event-hub.ts";
import { createRunnerPlatform } from "../supervisor/platform-binding.ts";
import type { FatalHandler } from "./crash-guard.ts";
import { parseServeFlags, SERVE_USAGE } from "./serve-flags.ts";

/** Absolute path of the bundled `atoll-agent` entry point. */
const BUNDLED_AGENT = fileURLToPath(
  new URL(`../agent/main${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`, import.meta.url),
);

/** How long in-flight RPCs get to finish during a shutdown before connections are cut. */
const RPC_DRAIN_GRACE_MS = 5_000;

export interface ServeIo {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /**
   * Resolves with the first of SIGTERM, SIGINT (stop agents, exit) or SIGUSR2
   * (detach: exit leaving agents running); `onSecond` runs on any later signal.
   */
  readonly shutdownSignals: (onSecond: () => void) => Promise<NodeJS.Signals>;
  /**
   * Subscribes to errors nothing caught (`src/cli/crash-guard.ts`): the daemon logs each and
   * detaches, exiting 1 with the agents left running for the next daemon to adopt.
   */
  readonly fatalErrors?: (handler: FatalHandler) => void;
}

/** `argv[0]` → the argv prefix that runs it: the bundled runtime runs on this very Node. */
function resolveCommand(argv0: string): readonly string[] {
  return argv0 === "atoll-agent" ? [process.execPath, BUNDLED_AGENT] : [argv0];
}

function loadConfig(io: ServeIo): { config: ServerConfig; warnings: string[] } | number {
  const parsed = parseServeFlags(io.argv);
  if ("error" in parsed) {
    io.stderr.write(`atoll-deploy serve: ${parsed.error}\n${SERVE_USAGE}`);
    return 2;
  }
  if (parsed.help) {
    io.stdout.write(SERVE_USAGE);
    return 0;
  }
  try {
    return loadServerConfig({
      flags: parsed.flags,
      env: io.env,
      cwd: io.cwd,
      homeDir: io.env.HOME ?? os.homedir(),
      ...(parsed.configFile !== undefined && { configFile: parsed.configFile }),
    });
  } catch (error) {
    if (isConfigError(error)) {
      io.stderr.write(`atoll-deploy serve: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

/**
 * `atoll-deploy serve`: runs the daemon until SIGTERM/SIGINT. Exit status 0 when
 * every agent stopped within its grace, 1 when any had to be killed or the
 * server could not start, 2 for configuration errors.
 */
export async function runServe(io: ServeIo): Promise<number> {
  const loaded = loadConfig(io);
  if (typeof loaded === "number") return loaded;
  const { config, warnings } = loaded;
  if (!config.enabled) {
    io.stdout.write("atoll-deploy: the server is disabled by config (enabled = false)\n");
    return 0;
  }
  const logger = createJsonLogger({ sink: io.stderr, level: config.logLevel });
  // An error nothing caught: logged, then the daemon detaches (below) instead of dying mid-write.
  const fatal = new Promise<unknown>((resolve) => {
    io.fatalErrors?.((error, origin) => {
      logger.error("uncaught error in the daemon; detaching, agents keep running", {
        origin,
        error,
      });
      resolve(error);
    });
  });
  for (const warning of warnings) logger.warn(warning);
  let authToken: string | undefined;
  if (config.authTokenFile !== undefined) {
    try {
      const read = readAuthToken(config.authTokenFile);
      authToken = read.token;
      for (const warning of read.warnings) logger.warn(warning);
    } catch (error) {
      if (!isConfigError(error)) throw error;
      io.stderr.write(`atoll-deploy serve: ${error.message}\n`);
      return 2;
    }
  }
  logger.info("effective configuration", { config: describeConfig(config) });

  let discovered: Awaited<ReturnType<typeof discoverAgents>>;
  try {
    discovered = await discoverAgents(config.agentsDirectory);
  } catch (error) {
    io.stderr.write(
      `atoll-deploy serve: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 2;
  }
  // ── Backend selection ────────────────────────────────────────────────────────────────
  // The one place that chooses which AgentBackend runs the agents (DESIGN.md, "Backends, not
  // branches"): the Kubernetes backend has its own composition; everything below is the local
  // supervisor's. Loaded on demand so the local daemon never loads the Kubernetes client.
  if (config.backend === "kubernetes") {
    const { serveOnKubernetes } = await import("./serve-kubernetes.ts");
    return serveOnKubernetes({ config, io, logger, discovered, authToken });
  }
  // ─────────────────────────────────────────────────────────────────────────────────────

  const logDir = path.join(config.stateDir, "logs");
  await mkdir(logDir, { recursive: true });

  const lifetime = new AbortController();
  const force = new AbortController();
  const stateFile = new StateFile(path.join(config.stateDir, "state.json"));
  let registry: AgentRegistry | undefined;
  const saver = new StateSaver(
    stateFile,
    () => {
      if (registry === undefined) throw new Error("registry not ready");
      return registry;
    },
    logger,
  );
  // [http_listen, issue 16] Metrics follow the registry's events, the platform's probes and
  // memory readings, and both transports' calls; none of it exists when http_listen is off.
  const metrics =
    config.httpListen === undefined
      ? undefined
      : new AtollMetrics({ services: [DeploymentService] });
  // [output keeper, issue 14; docs/platform.md "Agent output"] Owns the agents' FIFOs and log
  // files and outlives this daemon: found or started before any agent is spawned or adopted,
  // told when an agent is dropped, stopped after the agents, left running on detach (SIGUSR2)
  // and on a fatal error, since the agents still write through it; when serve cannot listen,
  // stopped unless it serves the streams of agents an earlier daemon left running.
  const keeper = new OutputKeeper({ stateDir: config.stateDir, logger });
  try {
    await keeper.start();
  } catch (error) {
    io.stderr.write(
      `atoll-deploy serve: cannot start the output keeper: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    metrics?.close();
    return 1;
  }
  const runnerPlatform = createRunnerPlatform({ output: keeper });
  // --- end of the output keeper's start ------------------------------------------------------
  registry = new AgentRegistry(
    {
      clock: systemClock,
      platform:
        metrics === undefined ? runnerPlatform : observeRunnerPlatform(runnerPlatform, metrics),
      ports: new PortAllocator({
        host: config.host,
        basePort: config.basePort,
        maxPort: config.maxPort,
      }),
      slots: new SlotPool(config.maxAgents),
      defaults: {
        autoRestart: config.restartOnFailure,
        maxRestarts: config.maxRestarts,
        healthCheckIntervalMs: config.healthCheckIntervalMs,
        logMaxBytes: config.logMaxBytes,
        logKeep: config.logKeep,
      },
      host: config.host,
      logDir,
      resolveCommand,
      // A plain copy taken once: reading process.env goes through a C++ accessor per variable.
      baseEnv: { ...io.env },
      stateDir: path.resolve(config.stateDir),
      logger,
      forceStop: force.signal,
    },
    () => saver.schedule(),
    // Revisions start at the clock in microseconds: above any a previous run handed out.
    new EventHub({
      baseRevision: Date.now() * 1000,
      onListenerError: (error) => logger.error("a change listener failed", { error }),
    }),
  );
  // [output keeper] An agent dropped from the registry: its stream is drained and forgotten.
  registry.events.subscribe((change) => {
    if (change.kind === "removed") void keeper.remove(change.name);
  });
  // [http_listen, issue 16] The metrics follow the local backend's agents from here on.
  metrics?.follow(registry);

  // --- Agent packages (SPEC §12, docs/packages.md) -------------------------------------------
  // Installed packages live in <state_dir>/packages and are discovered beside the agents
  // directory: the catalog merges both into the registry; the store installs and removes them
  // and is the local backend's `packages` capability. Started here, closed after the drain.
  const localRegistry = registry;
  const catalog = new AgentCatalog({
    layout: new PackageLayout(config.stateDir),
    apply: (agents) => localRegistry.applyDiscovery(agents),
    basePath: io.env.PATH,
  });
  const packages = new PackageStore({
    stateDir: config.stateDir,
    logDir,
    // [output keeper] Provisioning output goes into the agent's FIFO, so that the keeper writes
    // it into the log within the bound (it owns the file and its size).
    provisioningOutput: (name) =>
      keeper.prepare({
        name,
        log: agentLogPath(logDir, name),
        maxBytes: config.logMaxBytes,
        keep: config.logKeep,
      }),
    maxPackageBytes: config.maxPackageBytes,
    host: {
      backend: registry,
      directoryAgent: (name) => catalog.directoryAgent(name),
      refreshPackages: () => catalog.refreshPackages(),
    },
    env: { ...io.env },
    clock: systemClock,
    logger,
  });
  await packages.open();
  catalog.setDirectory(discovered);
  await catalog.refreshPackages();
  const backend: AgentBackend = withPackages(registry, packages);
  // --- end of agent packages -------------------------------------------------------------------

  for (const warning of discovered.warnings) logger.warn(warning);

  let server: Awaited<ReturnType<typeof startRpcServer>>;
  try {
    server = await startRpcServer({
      backend,
      clock: systemClock,
      logger,
      listen: config.listen ?? "127.0.0.1:50051", // always set from the CLI
      authToken,
      tlsCert: config.tlsCert,
      tlsKey: config.tlsKey,
      tlsClientCa: config.tlsClientCa,
      observer: metrics,
    });
  } catch (error) {
    lifetime.abort();
    await keeper.leave(); // before the message: the reason is the last line on stderr
    io.stderr.write(
      `atoll-deploy serve: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 1;
  }

  // [http_listen, issue 16] The HTTP listener (SPEC §9): dashboard, /metrics, and the same
  // DeploymentService handlers over Connect and gRPC-Web, with the gRPC listener's token and
  // TLS. Started after gRPC (it mounts gRPC's handler objects), drained by its beginDrain()
  // (the handlers' shared shutdown signal), closed with it.
  let http: HttpServer | undefined;
  if (config.httpListen !== undefined) {
    try {
      http = await startHttpServer({
        listen: config.httpListen,
        api: server.api,
        logger,
        authToken,
        tlsCert: config.tlsCert,
        tlsKey: config.tlsKey,
        tlsClientCa: config.tlsClientCa,
        metrics,
        observer: metrics,
        uiDirectory: DEFAULT_UI_DIRECTORY,
      });
    } catch (error) {
      metrics?.close();
      lifetime.abort();
      await server.close(0);
      packages.close();
      await keeper.leave(); // before the message: the reason is the last line on stderr
      io.stderr.write(
        `atoll-deploy serve: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      return 1;
    }
  }
  const closeListeners = async (): Promise<void> => {
    await Promise.all([server.close(RPC_DRAIN_GRACE_MS), http?.close(RPC_DRAIN_GRACE_MS)]);
    metrics?.close();
  };

  const restored = await restoreState(
    stateFile,
    registry,
    logger,
    lifetime.signal,
    path.resolve(config.stateDir),
  );
  registry.autostart();
  logger.info("restored previous state", restored);
  // Background tasks of the daemon's lifetime: each handles its own failure, and all are
  // awaited at shutdown so that none outlives the daemon (no promise is left floating).
  // Old package versions are collected once the live agents (adopted ones too) are known.
  const collecting = packages
    .collectAll()
    .catch((error: unknown) => logger.error("collecting old package versions failed", { error }));
  const watchingPackages = catalog
    .watchPackages(lifetime.signal, (error: unknown) =>
      logger.warn("packages directory scan failed", { error: String(error) }),
    )
    .catch((error: unknown) =>
      logger.error("packages directory watch failed", { error: String(error) }),
    );
  const watching = watchAgentsDirectory(
    config.agentsDirectory,
    (result) => catalog.setDirectory(result),
    {
      signal: lifetime.signal,
      initial: discovered,
      onError: (error: unknown) =>
        logger.warn("agents directory scan failed", { error: String(error) }),
    },
  ).catch((error: unknown) =>
    logger.error("agents directory watch failed", { error: String(error) }),
  );

  io.stdout.write(`atoll-deploy listening on ${server.address}\n`);
  if (http !== undefined) io.stdout.write(`atoll-deploy dashboard on ${http.url}/\n`);
  logger.info("listening", {
    address: server.address,
    ...(http !== undefined && { http: http.url }),
    agents: registry.list().length,
  });

  const stop = await Promise.race([
    io
      .shutdownSignals(() => {
        logger.warn("second signal: killing agents now");
        force.abort();
      })
      .then((signal) => ({ signal, fatal: false })),
    fatal.then(() => ({ signal: undefined, fatal: true })),
  ]);
  const { signal } = stop;
  server.beginDrain();
  // Background tasks end with `lifetime`; awaited so that none outlives the daemon.
  const background = (): Promise<unknown> =>
    Promise.allSettled([collecting, watchingPackages, watching]);
  if (signal === "SIGUSR2" || stop.fatal) {
    // Upgrade path (and the way out of an error nothing caught): leave the agents running and
    // the state saved; the next `serve` adopts them.
    logger.info("detaching: agents keep running for the next daemon to adopt", {
      ...(signal !== undefined && { signal }),
    });
    registry.detach();
    keeper.detach();
    await saver
      .save()
      .catch((error: unknown) => logger.error("final state save failed", { error }));
    lifetime.abort();
    await closeListeners();
    await background();
    packages.close();
    return stop.fatal ? 1 : 0;
  }
  logger.info("shutting down", { signal });
  const { killed } = await registry.shutdown();
  await keeper
    .stop()
    .catch((error: unknown) => logger.error("stopping the output keeper failed", { error }));
  await saver.save().catch((error: unknown) => logger.error("final state save failed", { error }));
  lifetime.abort();
  await closeListeners();
  await background();
  packages.close();
  logger.info("stopped", { killedAgents: killed });
  return killed ? 1 : 0;
}

export type { Logger };
