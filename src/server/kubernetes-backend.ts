/**
 * The Kubernetes backend part (SPEC §11, `backend = "kubernetes"`): the agents run on a cluster,
 * served through `KubernetesBackend` (src/kube/). No state file, no port leases, no log
 * rotation: the cluster keeps the agents and their logs, so closing stops only this server's
 * caches and watches, never the agents (`detach` and `stop` are the same here).
 */
import { watchAgentsDirectory } from "../config/agents-watcher.ts";
import { ConfigError } from "../config/config-error.ts";
import { type DiscoveryResult, discoverAgents } from "../config/discovery.ts";
import type { ServerConfig } from "../config/server-config-types.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import { createClusterClient, loadKubeConfig } from "../kube/cluster-client.ts";
import { KubernetesBackend } from "../kube/kubernetes-backend.ts";
import { EventHub } from "../supervisor/event-hub.ts";
import { type BackendPart, BackendStartFailed } from "./server-parts.ts";

/** How long the start waits for the first list of the cluster's objects before giving up, ms. */
const FIRST_SYNC_TIMEOUT_MS = 30_000;

export interface KubernetesBackendPartOptions {
  readonly config: ServerConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The package version: the default image `atoll-agent:<version>`. */
  readonly version: string;
}

/**
 * Loads the kubeconfig, scans the agents directory and waits for the first list of the
 * cluster's objects.
 * @throws ConfigError when the agents directory or the kubeconfig cannot be read;
 *   BackendStartFailed when the first list does not arrive within 30 s.
 */
export async function openKubernetesBackend(
  options: KubernetesBackendPartOptions,
): Promise<BackendPart> {
  const { config, clock, logger } = options;
  const discovered = await discoverAgents(config.agentsDirectory);
  let client: ReturnType<typeof createClusterClient>;
  let cluster: string;
  try {
    const kc = loadKubeConfig({ kubeconfig: config.kubeconfig });
    cluster = kc.getCurrentCluster()?.server ?? "(no cluster)";
    client = createClusterClient(kc, { namespace: config.namespace });
  } catch (error) {
    throw new ConfigError(
      `cannot load the kubeconfig${config.kubeconfig === undefined ? "" : ` ${config.kubeconfig}`}: ${error instanceof Error ? error.message : String(error)}`,
      { key: "kubeconfig" },
      { cause: error },
    );
  }
  const backend = new KubernetesBackend({
    client,
    clock,
    logger,
    version: options.version,
    defaults: {
      autoRestart: config.restartOnFailure,
      maxRestarts: config.maxRestarts,
      healthCheckIntervalMs: config.healthCheckIntervalMs,
    },
    // Revisions start at the clock in microseconds, as for the local backend: above any a
    // previous run handed out, so a resuming watcher gets a fresh snapshot.
    events: new EventHub({
      baseRevision: clock.now() * 1000,
      onListenerError: (error) => logger.error("a change listener failed", { error }),
    }),
  });
  const apply = (result: DiscoveryResult): void => {
    backend.applyDiscovery(result.agents);
    for (const warning of result.warnings) logger.warn(warning);
  };
  apply(discovered);
  let timer: NodeJS.Timeout | undefined;
  const synced = await Promise.race([
    backend.start().then(() => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), FIRST_SYNC_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  if (!synced) {
    backend.close();
    throw new BackendStartFailed(
      `cannot list the agents' objects in namespace ${client.namespace} at ${cluster} within ${FIRST_SYNC_TIMEOUT_MS / 1000} s (see the log)`,
    );
  }
  logger.info("cluster synced", { cluster, namespace: client.namespace });

  const lifetime = new AbortController();
  let watching: Promise<unknown> = Promise.resolve();
  return {
    backend,
    async rescan() {
      apply(await discoverAgents(config.agentsDirectory));
    },
    async run() {
      watching = watchAgentsDirectory(config.agentsDirectory, apply, {
        signal: lifetime.signal,
        initial: discovered,
        onError: (error: unknown) =>
          logger.warn("agents directory scan failed", { error: String(error) }),
      }).catch((error: unknown) =>
        logger.error("agents directory watch failed", { error: String(error) }),
      );
      for (const agent of discovered.agents) {
        if (agent.kind !== "valid" || !agent.definition.deployment.autostart) continue;
        backend
          .deploy(agent.definition.name)
          .catch((error: unknown) =>
            logger.warn("autostart failed", { agent: agent.definition.name, error: String(error) }),
          );
      }
    },
    async abandon() {
      lifetime.abort();
      backend.close();
    },
    async close() {
      logger.info("the agents keep running on the cluster");
      lifetime.abort();
      backend.close();
      await watching;
      return { killed: false };
    },
  };
}
