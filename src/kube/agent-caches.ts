/**
 * The Kubernetes backend's reads: two informer caches (`informer.ts`), of the Deployments and of
 * the pods labelled `app.kubernetes.io/managed-by=atoll-deploy`, looked up by agent (the
 * `NAME_LABEL` of each object). Nothing here polls; every change reaches the backend through
 * the callbacks.
 */
import type { Logger } from "../core/logger.ts";
import type { ClusterClient } from "./cluster-client.ts";
import {
  type ClusterDeployment,
  type ClusterFacts,
  type ClusterPod,
  clusterFacts,
} from "./cluster-state.ts";
import { Informer } from "./informer.ts";
import { NAME_LABEL } from "./object-names.ts";

type Named<T> = T & { readonly metadata: { readonly name?: string } };

export interface AgentCachesOptions {
  readonly logger: Logger;
  /** Ends both watch loops. */
  readonly signal: AbortSignal;
  /** A Deployment was added or changed (`object`), or deleted (undefined). */
  readonly onDeployment: (object: ClusterDeployment | undefined) => void;
  /** Pod `name` was added or changed (`object`), or deleted (undefined). */
  readonly onPod: (name: string, object: ClusterPod | undefined) => void;
  /** A cache was rebuilt after 410 Gone. */
  readonly onRelist: () => void;
}

export class AgentCaches {
  readonly #deployments: Informer<Named<ClusterDeployment>>;
  readonly #pods: Informer<Named<ClusterPod>>;

  constructor(client: Pick<ClusterClient, "deployments" | "pods">, options: AgentCachesOptions) {
    const common = { logger: options.logger, signal: options.signal, onRelist: options.onRelist };
    this.#deployments = new Informer(client.deployments, {
      ...common,
      what: "deployments",
      onChange: (_name, object) => options.onDeployment(object),
    });
    this.#pods = new Informer(client.pods, {
      ...common,
      what: "pods",
      onChange: (name, object) => options.onPod(name, object),
    });
  }

  /** Starts both caches; resolves once both hold a first list. */
  async start(): Promise<void> {
    await Promise.all([this.#deployments.start(), this.#pods.start()]);
  }

  /** Relists seen by the caches (after 410 Gone). */
  get relists(): number {
    return this.#deployments.relists + this.#pods.relists;
  }

  /** The agents that have a managed Deployment or pod on the cluster. */
  agentNames(): Set<string> {
    const names = new Set<string>();
    for (const object of [...this.#deployments.list(), ...this.#pods.list()]) {
      const agent = object.metadata.labels?.[NAME_LABEL];
      if (agent !== undefined) names.add(agent);
    }
    return names;
  }

  deployment(name: string): ClusterDeployment | undefined {
    return this.#deployments.list().find((d) => d.metadata.labels?.[NAME_LABEL] === name);
  }

  pods(name: string): ClusterPod[] {
    return this.#pods.list().filter((p) => p.metadata.labels?.[NAME_LABEL] === name);
  }

  /** The agent's state as its Deployment and pods tell it (`cluster-state.ts`). */
  facts(name: string): ClusterFacts {
    return clusterFacts(this.deployment(name), this.pods(name));
  }
}
