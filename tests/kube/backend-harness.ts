/**
 * A Kubernetes backend on a cluster: the simulator (default) or, for the live suite, a real
 * cluster's context. Definitions are real files in a temp agents directory.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { discoverAgents } from "../../src/config/discovery.ts";
import type { AgentStatus } from "../../src/core/agent-status.ts";
import { systemClock } from "../../src/core/clock.ts";
import { createJsonLogger, silentLogger } from "../../src/core/logger.ts";
import {
  type ClusterClient,
  createClusterClient,
  loadKubeConfig,
} from "../../src/kube/cluster-client.ts";
import { KubernetesBackend } from "../../src/kube/kubernetes-backend.ts";

export interface BackendHarness {
  readonly backend: KubernetesBackend;
  readonly client: ClusterClient;
  readonly agentsDir: string;
  /** Resolves with the agent's status once `predicate` holds (checked on every change). */
  waitFor(
    name: string,
    predicate: (s: AgentStatus) => boolean,
    timeoutMs?: number,
  ): Promise<AgentStatus>;
  close(): Promise<void>;
}

export async function backendHarness(
  agents: Record<string, string>,
  cluster: {
    readonly kubeconfigText?: string;
    readonly context?: string | undefined;
    readonly namespace?: string | undefined;
  },
  options: { readonly maxRestarts?: number; readonly podStartTimeoutMs?: number } = {},
): Promise<BackendHarness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-kube-"));
  const agentsDir = path.join(dir, "agents");
  for (const [name, text] of Object.entries(agents)) {
    await mkdir(path.join(agentsDir, name), { recursive: true });
    await writeFile(path.join(agentsDir, name, "agent.toml"), text);
  }
  let kubeconfig: string | undefined;
  if (cluster.kubeconfigText !== undefined) {
    kubeconfig = path.join(dir, "kubeconfig");
    await writeFile(kubeconfig, cluster.kubeconfigText, { mode: 0o600 });
  }
  const kc = loadKubeConfig({ kubeconfig, context: cluster.context });
  const client = createClusterClient(kc, { namespace: cluster.namespace });
  const backend = new KubernetesBackend({
    client,
    clock: systemClock,
    logger:
      process.env.DEBUG_KUBE === "1"
        ? createJsonLogger({ sink: process.stderr, level: "debug" })
        : silentLogger,
    version: "0.1.0",
    defaults: {
      autoRestart: true,
      maxRestarts: options.maxRestarts ?? 2,
      healthCheckIntervalMs: 30_000,
    },
    podStartTimeoutMs: options.podStartTimeoutMs ?? 60_000,
  });
  backend.applyDiscovery((await discoverAgents(agentsDir)).agents);
  await backend.start();
  return {
    backend,
    client,
    agentsDir,
    waitFor(name, predicate, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const status = backend.status(name);
          if (!predicate(status)) return false;
          clearTimeout(timer);
          unsubscribe();
          resolve(status);
          return true;
        };
        const timer = setTimeout(() => {
          unsubscribe();
          reject(
            new Error(`timed out waiting for ${name}: ${JSON.stringify(backend.status(name))}`),
          );
        }, timeoutMs);
        const unsubscribe = backend.events.subscribe((change) => {
          if (change.name === name) check();
        });
        check();
      });
    },
    async close() {
      backend.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A definition the simulator (or a cluster with the atoll-agent image) can run. */
export function agentToml(name: string, extra = "", startTimeoutS = 5): string {
  return `[agent]
name = "${name}"
version = "1.0.0"

[deployment]
start_timeout = ${startTimeoutS}
health_check_interval = 1
health_timeout = 1
stop_timeout = 1
${extra}

[llm]
model = "echo"
`;
}
