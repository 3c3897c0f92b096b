/**
 * `serve --backend kubernetes`: the daemon's composition when agents run on a cluster (SPEC
 * §11). The same gRPC server and DeploymentService as `serve.ts`, over `KubernetesBackend`
 * instead of the local supervisor. No state file, no port leases, no log rotation: the cluster
 * keeps the agents and their logs, so a shutdown stops only the server, never the agents.
 */
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { DiscoveredAgent } from "../config/agent-definition.ts";
import { watchAgentsDirectory } from "../config/agents-watcher.ts";
import type { ServerConfig } from "../config/server-config-types.ts";
import { systemClock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import { type HttpServer, startHttpServer } from "../http/http-server.ts";
import { AtollMetrics } from "../http/metrics.ts";
import { DEFAULT_UI_DIRECTORY } from "../http/static-assets.ts";
import { createClusterClient, loadKubeConfig } from "../kube/cluster-client.ts";
import { KubernetesBackend } from "../kube/kubernetes-backend.ts";
import { startRpcServer } from "../rpc/server.ts";
import { EventHub } from "../supervisor/event-hub.ts";
import { packageVersion } from "./cli.ts";
import type { ServeIo } from "./serve.ts";

/** How long `serve` waits for the first list of the cluster's objects before giving up. */
const FIRST_SYNC_TIMEOUT_MS = 30_000;
/** How long in-flight RPCs get to finish during a shutdown before connections are cut. */
const RPC_DRAIN_GRACE_MS = 5_000;

export interface KubernetesServeInput {
  readonly config: ServerConfig;
  readonly io: ServeIo;
  readonly logger: Logger;
  /** The bearer token read from `auth_token_file` (undefined: no auth). */
  readonly authToken: string | undefined;
  readonly discovered: {
    readonly agents: readonly DiscoveredAgent[];
    readonly warnings: readonly string[];
  };
}

/** Runs the daemon on the Kubernetes backend until a shutdown signal; resolves with the exit status. */
export async function serveOnKubernetes(input: KubernetesServeInput): Promise<number> {
  const { config, io, logger, discovered } = input;
  let client: ReturnType<typeof createClusterClient>;
  let server: string;
  try {
    const kc = loadKubeConfig({ kubeconfig: config.kubeconfig });
    server = kc.getCurrentCluster()?.server ?? "(no cluster)";
    client = createClusterClient(kc, { namespace: config.namespace });
  } catch (error) {
    io.stderr.write(
      `atoll-deploy serve: cannot load the kubeconfig${config.kubeconfig === undefined ? "" : ` ${config.kubeconfig}`}: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 2;
  }
  const backend = new KubernetesBackend({
    client,
    clock: systemClock,
    logger,
    version: packageVersion(),
    defaults: {
      autoRestart: config.restartOnFailure,
      maxRestarts: config.maxRestarts,
      healthCheckIntervalMs: config.healthCheckIntervalMs,
    },
    // Revisions start at the clock in microseconds, as for the local backend: above any a
    // previous run handed out, so a resuming watcher gets a fresh snapshot.
    events: new EventHub({ baseRevision: Date.now() * 1000 }),
  });
  backend.applyDiscovery(discovered.agents);
  for (const warning of discovered.warnings) logger.warn(warning);
  const lifetime = new AbortController();
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
    io.stderr.write(
      `atoll-deploy serve: cannot list the agents' objects in namespace ${client.namespace} at ${server} within ${FIRST_SYNC_TIMEOUT_MS / 1000} s (see the log)\n`,
    );
    return 1;
  }

  // [http_listen, issue 16] Metrics from the backend's events and both transports' calls (the
  // cluster runs the probes here: no probe histogram or memory readings of our own).
  const metrics =
    config.httpListen === undefined
      ? undefined
      : new AtollMetrics({ services: [DeploymentService] });
  metrics?.follow(backend);

  let rpc: Awaited<ReturnType<typeof startRpcServer>>;
  try {
    rpc = await startRpcServer({
      observer: metrics,
      backend,
      clock: systemClock,
      logger,
      listen: config.listen ?? "127.0.0.1:50051", // always set from the CLI
      authToken: input.authToken,
      tlsCert: config.tlsCert,
      tlsKey: config.tlsKey,
      tlsClientCa: config.tlsClientCa,
    });
  } catch (error) {
    backend.close();
    io.stderr.write(
      `atoll-deploy serve: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 1;
  }
  // [http_listen, issue 16] The HTTP listener (SPEC §9), as in serve.ts: after gRPC, with its
  // handlers, token and TLS; drained by rpc.beginDrain() and closed with it.
  let http: HttpServer | undefined;
  if (config.httpListen !== undefined) {
    try {
      http = await startHttpServer({
        listen: config.httpListen,
        api: rpc.api,
        logger,
        authToken: input.authToken,
        tlsCert: config.tlsCert,
        tlsKey: config.tlsKey,
        tlsClientCa: config.tlsClientCa,
        metrics,
        observer: metrics,
        uiDirectory: DEFAULT_UI_DIRECTORY,
      });
    } catch (error) {
      io.stderr.write(
        `atoll-deploy serve: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      metrics?.close();
      backend.close();
      await rpc.close(0);
      return 1;
    }
  }
  void watchAgentsDirectory(
    config.agentsDirectory,
    (result) => backend.applyDiscovery(result.agents),
    {
      signal: lifetime.signal,
      initial: discovered,
      onError: (error: unknown) =>
        logger.warn("agents directory scan failed", { error: String(error) }),
    },
  ).catch((error: unknown) =>
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

  io.stdout.write(`atoll-deploy listening on ${rpc.address}\n`);
  if (http !== undefined) io.stdout.write(`atoll-deploy dashboard on ${http.url}/\n`);
  logger.info("listening", {
    address: rpc.address,
    ...(http !== undefined && { http: http.url }),
    backend: "kubernetes",
    cluster: server,
    namespace: client.namespace,
    agents: backend.list().length,
  });
  const signal = await io.shutdownSignals(() => logger.warn("second signal: already stopping"));
  logger.info("shutting down; the agents keep running on the cluster", { signal });
  rpc.beginDrain();
  lifetime.abort();
  backend.close();
  await Promise.all([rpc.close(RPC_DRAIN_GRACE_MS), http?.close(RPC_DRAIN_GRACE_MS)]);
  metrics?.close();
  return 0;
}
