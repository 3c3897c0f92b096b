/**
 * The local backend part: agents as supervised processes on this host (SPEC §2, §4, §5, §12). It
 * owns the agent registry, the state file (saved on every change, restored at start), the
 * output keeper (the agents' output and logs, docs/platform.md), the watch of the agents
 * directory and the installed agent packages.
 */

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { watchAgentsDirectory } from "../config/agents-watcher.ts";
import { type DiscoveryResult, discoverAgents } from "../config/discovery.ts";
import type { ServerConfig } from "../config/server-config-types.ts";
import { withPackages } from "../core/agent-backend.ts";
import { runInBackground } from "../core/background-task.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import { AgentCatalog } from "../packages/agent-catalog.ts";
import { PackageLayout } from "../packages/package-layout.ts";
import { PackageStore } from "../packages/package-store.ts";
import { agentLogPath } from "../platform/log-file.ts";
import { siblingModulePath } from "../platform/module-path.ts";
import { OutputKeeper } from "../platform/output-keeper.ts";
import { PortAllocator } from "../platform/port-allocator.ts";
import { StateFile } from "../platform/state-file.ts";
import { AgentRegistry } from "../supervisor/agent-registry.ts";
import { SlotPool } from "../supervisor/agent-slots.ts";
import { loadDaemonState, restoreState, StateSaver } from "../supervisor/daemon-state.ts";
import { EventHub } from "../supervisor/event-hub.ts";
import { createRunnerPlatform } from "../supervisor/platform-binding.ts";
import type { RunnerPlatform } from "../supervisor/runner-deps.ts";
import { type BackendPart, BackendStartFailed } from "./server-parts.ts";

/** The bundled `atoll-agent` runtime's entry module (`.ts` from the sources, `.js` built). */
const BUNDLED_AGENT = siblingModulePath(import.meta.url, "../agent/main");

/** `argv[0]` → the argv prefix that runs it: the bundled runtime runs on this very Node. */
function resolveCommand(argv0: string): readonly string[] {
  return argv0 === "atoll-agent" ? [process.execPath, BUNDLED_AGENT] : [argv0];
}

export interface LocalBackendOptions {
  readonly config: ServerConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Wraps the runners' OS facilities (metrics observe probes and memory readings); none by default. */
  readonly observePlatform?: ((platform: RunnerPlatform) => RunnerPlatform) | undefined;
  /** The environment agents inherit (section 2 adds its variables). */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/**
 * Scans the agents directory and builds the registry; starts no agent and no background work
 * (that is `run()`).
 * @throws ConfigError when the agents directory is missing or cannot be listed;
 *   BackendStartFailed when the output keeper cannot be started.
 */
export async function openLocalBackend(options: LocalBackendOptions): Promise<BackendPart> {
  const { config, clock, logger } = options;
  const discovered = await discoverAgents(config.agentsDirectory);
  const stateDir = path.resolve(config.stateDir);
  const logDir = path.join(stateDir, "logs");
  await mkdir(logDir, { recursive: true });

  const lifetime = new AbortController();
  /** What run() starts; ends with `lifetime`, awaited by close(). */
  const background: Promise<unknown>[] = [];
  const force = new AbortController();
  const stateFile = new StateFile(path.join(stateDir, "state.json"));
  // [issue 13: which processes are ours; docs/operations.md] state.json is read once, before
  // anything is spawned: its ownership secret (made and saved at the first start) proves agent
  // processes ours, and the agents' cgroups are found from it. Both are saved with every state
  // write; the cgroups are removed at a shutdown (left for the next daemon on a detach).
  const daemonState = await loadDaemonState(stateFile, logger, { stateDir });
  const saver = new StateSaver(stateFile, () => registry, logger, daemonState);
  // [output keeper, issue 14; docs/platform.md "Agent output"] Owns the agents' FIFOs and log
  // files and outlives this server: found or started before any agent is spawned or adopted,
  // told when an agent is dropped, stopped after the agents, left running on detach (the
  // agents still write through it); when the start fails, stopped unless it serves the streams
  // of agents an earlier daemon left running.
  const keeper = new OutputKeeper({ stateDir, logger });
  try {
    await keeper.start();
  } catch (error) {
    daemonState.cgroups?.close();
    throw new BackendStartFailed(
      `cannot start the output keeper: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const registry: AgentRegistry = new AgentRegistry(
    {
      clock,
      platform: (options.observePlatform ?? ((platform) => platform))(
        createRunnerPlatform({
          output: keeper,
          cgroups: daemonState.cgroups,
          ownership: daemonState.ownership,
        }),
      ),
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
      baseEnv: { ...options.env },
      ownership: daemonState.ownership,
      logger,
      forceStop: force.signal,
    },
    () => saver.schedule(),
    // Revisions start at the clock in microseconds: above any a previous run handed out.
    new EventHub({
      baseRevision: clock.now() * 1000,
      onListenerError: (error) => logger.error("a change listener failed", { error }),
    }),
  );

  // [output keeper] An agent dropped from the registry: its stream is drained and forgotten.
  registry.events.subscribe((change) => {
    if (change.kind !== "removed") return;
    // A failure only leaves the stream registered in the keeper until the next daemon start.
    runInBackground({ logger, fields: { agent: change.name } }, "remove output stream", () =>
      keeper.remove(change.name),
    );
  });

  // --- Agent packages (SPEC §12, docs/packages.md) -------------------------------------------
  // Installed packages live in <state_dir>/packages and are discovered beside the agents
  // directory: the catalog merges both into the registry; the store installs and removes them
  // and is the local backend's `packages` capability.
  const catalog = new AgentCatalog({
    layout: new PackageLayout(stateDir),
    apply: (agents) => registry.applyDiscovery(agents),
    basePath: options.env.PATH,
  });
  const packages = new PackageStore({
    stateDir,
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
    env: { ...options.env },
    clock,
    logger,
  });
  await packages.open();
  // --- end of agent packages -------------------------------------------------------------------

  /** A scan of the agents directory, merged with the installed packages into the registry. */
  const apply = (result: DiscoveryResult): void => {
    for (const warning of result.warnings) logger.warn(warning);
    catalog.setDirectory(result);
  };
  apply(discovered);
  await catalog.refreshPackages();

  return {
    backend: withPackages(registry, packages),

    async rescan() {
      apply(await discoverAgents(config.agentsDirectory));
      await catalog.refreshPackages();
    },

    async run() {
      const restored = await restoreState(daemonState, registry, logger, lifetime.signal);
      registry.autostart();
      logger.info("restored previous state", restored);
      // Background tasks of the server's lifetime: each handles its own failure, and all are
      // awaited by close() so that none outlives the server.
      // Old package versions are collected once the live agents (adopted ones too) are known.
      background.push(
        packages
          .collectAll()
          .catch((error: unknown) =>
            logger.error("collecting old package versions failed", { error }),
          ),
        catalog
          .watchPackages(lifetime.signal, (error: unknown) =>
            logger.warn("packages directory scan failed", { error: String(error) }),
          )
          .catch((error: unknown) =>
            logger.error("packages directory watch failed", { error: String(error) }),
          ),
        watchAgentsDirectory(config.agentsDirectory, apply, {
          signal: lifetime.signal,
          initial: discovered,
          onError: (error: unknown) =>
            logger.warn("agents directory scan failed", { error: String(error) }),
        }).catch((error: unknown) =>
          logger.error("agents directory watch failed", { error: String(error) }),
        ),
      );
    },

    async abandon() {
      lifetime.abort();
      packages.close();
      await keeper.leave();
      daemonState.cgroups?.close(); // only the empty ones: agents of an earlier daemon stay
    },

    async close(mode, forceSignal) {
      const onForce = (): void => force.abort();
      if (forceSignal.aborted) onForce();
      else forceSignal.addEventListener("abort", onForce, { once: true });
      try {
        let killed = false;
        if (mode === "detach") {
          registry.detach();
          keeper.detach();
        } else {
          ({ killed } = await registry.shutdown());
          daemonState.cgroups?.close(); // [issue 13] every agent's tree is gone: its cgroup too
          await keeper
            .stop()
            .catch((error: unknown) =>
              logger.error("stopping the output keeper failed", { error }),
            );
        }
        await saver
          .save()
          .catch((error: unknown) => logger.error("final state save failed", { error }));
        return { killed };
      } finally {
        forceSignal.removeEventListener("abort", onForce);
        lifetime.abort();
        await Promise.allSettled(background);
        packages.close();
      }
    },
  };
}
