/**
 * `AgentBackend` on a Kubernetes cluster (SPEC §11, docs/kubernetes.md): the same API as the
 * local supervisor, with the cluster doing the running.
 *
 * - Reads (status, list, WatchHealth) come from two informer caches (Deployments and pods
 *   labelled `app.kubernetes.io/managed-by=atoll-deploy`), never from a poll.
 * - Deploy = server-side apply of the rendered ConfigMap, Service and Deployment, then a wait
 *   for the new pod to be Ready. Undeploy = scale to 0, then a wait until no pod is left.
 *   Restart = apply, then the pod-template annotation `kubectl.kubernetes.io/restartedAt`.
 * - Level-triggered: every cache change of an agent re-derives its status (`cluster-state.ts`)
 *   and, when it changed, publishes it; the same pass enforces the restart budget (past
 *   `max_restarts` container restarts: scale to 0, FAILED/CRASH_LOOP) and SPEC §2's "exit code
 *   0 means stopped" (scale to 0, STOPPED/EXITED), recording the reason in Deployment
 *   annotations so it survives a server restart.
 * - A relist after 410 Gone republishes every agent and drops the change history, so connected
 *   watchers get every agent afresh and resuming watchers get a fresh snapshot.
 */
import { readFile } from "node:fs/promises";
import {
  type DefinitionEntry,
  type DiscoveredAgent,
  definitionEntry,
  discoveredName,
} from "../config/agent-definition.ts";
import type { AgentBackend, LogStreamOptions } from "../core/agent-backend.ts";
import { agentNotFound, checkAgentName } from "../core/agent-name.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import type { Clock } from "../core/clock.ts";
import { DeployError } from "../core/errors.ts";
import { KeyedQueue } from "../core/keyed-queue.ts";
import type { Logger } from "../core/logger.ts";
import { EventHub } from "../supervisor/event-hub.ts";
import { AgentCaches } from "./agent-caches.ts";
import { agentLogLines } from "./agent-logs.ts";
import { AgentPolicy } from "./agent-policy.ts";
import { planStart, startPatch, startProgress, startTimedOut } from "./agent-start.ts";
import { agentView } from "./agent-view.ts";
import { AgentWaiters, supersededError, type WaitOutcome } from "./agent-waiters.ts";
import type { ClusterClient } from "./cluster-client.ts";
import { agentContainer, clusterFacts } from "./cluster-state.ts";
import { NAME_LABEL, objectName } from "./object-names.ts";
import { objectsOf, type RenderOptions } from "./render.ts";

export interface KubernetesBackendOptions {
  readonly client: ClusterClient;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The package version: the default image `atoll-agent:<version>`. */
  readonly version: string;
  /** Server defaults for keys a definition leaves unset (SPEC §3). */
  readonly defaults: NonNullable<RenderOptions["defaults"]>;
  readonly events?: EventHub;
  /**
   * Time a Deploy allows from the apply until the agent's container runs (scheduling, image
   * pull), before `start_timeout` starts counting; default 300 000 ms.
   */
  readonly podStartTimeoutMs?: number;
  /** Reads a definition file (default fs.readFile as UTF-8). */
  readonly readText?: (file: string) => Promise<string>;
}

const DEFAULT_POD_START_TIMEOUT_MS = 300_000;

export class KubernetesBackend implements AgentBackend {
  readonly events: EventHub;
  readonly #client: ClusterClient;
  readonly #options: KubernetesBackendOptions;
  readonly #entries = new Map<string, DefinitionEntry>();
  readonly #published = new Map<string, string>();
  readonly #last = new Map<string, AgentStatus>();
  /** The last container exit seen per agent (the pod that had it may be gone since). */
  readonly #lastExits = new Map<string, NonNullable<AgentStatus["lastExit"]>>();
  readonly #waiters = new AgentWaiters();
  /** Deploy, Undeploy and Restart of one agent run one after another. */
  readonly #operations = new KeyedQueue();
  /** Container restarts already counted before the last Deploy/Restart or stable period, by pod. */
  readonly #baselines = new Map<string, number>();
  readonly #policy: AgentPolicy;
  /** The Deploy or Restart under way per agent; an Undeploy aborts it. */
  readonly #starts = new Map<string, AbortController>();
  readonly #lifetime = new AbortController();
  readonly #caches: AgentCaches;
  #closed = false;

  constructor(options: KubernetesBackendOptions) {
    this.#options = options;
    this.#client = options.client;
    this.events = options.events ?? new EventHub();
    this.#policy = new AgentPolicy({
      client: options.client,
      logger: options.logger,
      clock: options.clock,
      stableAfterMs: (name) => {
        const entry = this.#entries.get(name);
        return entry?.kind === "valid" ? entry.definition.deployment.stableAfterMs : undefined;
      },
      onStable: (name) => {
        const facts = this.#caches.facts(name);
        if (
          facts.state === "RUNNING" &&
          facts.health === "HEALTHY" &&
          facts.container !== undefined
        ) {
          this.#baselines.set(facts.instance, facts.container.restartCount ?? 0);
          this.#changed(name);
        }
      },
    });
    this.#caches = new AgentCaches(options.client, {
      logger: options.logger,
      signal: this.#lifetime.signal,
      onDeployment: (object) => this.#changedObject(object),
      onPod: (name, object) => {
        // Restarts from before this server first saw the pod are not counted against the
        // budget: they may be weeks old, and this server has no record of when they happened.
        if (object !== undefined && !this.#baselines.has(name)) {
          this.#baselines.set(name, agentContainer(object)?.restartCount ?? 0);
        }
        this.#changedObject(object, name);
      },
      onRelist: () => this.#resnapshot(),
    });
  }

  /** Starts both caches; resolves once both hold a first list. */
  async start(): Promise<void> {
    await this.#caches.start();
    for (const name of this.#names()) this.#changed(name);
  }

  /** Stops the caches and every waiter; the agents keep running on the cluster. */
  close(): void {
    this.#closed = true;
    this.#lifetime.abort();
    this.#policy.close();
    this.#waiters.rejectAll(new DeployError("SERVER_SHUTTING_DOWN", "the server is shutting down"));
  }

  /** Relists seen by the caches (after 410 Gone). */
  get relists(): number {
    return this.#caches.relists;
  }

  /** Takes a discovery result: the definitions of the agents directory. */
  applyDiscovery(agents: readonly DiscoveredAgent[]): void {
    const seen = new Set<string>();
    for (const agent of agents) {
      const name = discoveredName(agent);
      seen.add(name);
      this.#entries.set(name, definitionEntry(agent));
      this.#changed(name);
    }
    for (const name of [...this.#entries.keys()]) {
      if (!seen.has(name)) {
        this.#entries.delete(name);
        this.#changed(name);
      }
    }
  }

  // ── reads ──────────────────────────────────────────────────────────────────────────────

  status(name: string): AgentStatus {
    this.#known(name);
    const status = this.#compute(name);
    if (status === undefined) throw agentNotFound(name);
    return status;
  }

  list(): AgentStatus[] {
    return [...this.#names()]
      .sort()
      .map((name) => this.#compute(name))
      .filter((s) => s !== undefined);
  }

  async *streamLogs(name: string, options: LogStreamOptions): AsyncIterable<readonly string[]> {
    this.#known(name);
    yield* agentLogLines(
      {
        client: this.#client,
        logger: this.#options.logger,
        instance: () => this.#caches.facts(name).instance,
        known: () => this.#names().has(name),
        nextInstance: (previous, signal) => this.#nextInstance(name, previous, signal),
      },
      options,
    );
  }

  // ── operations ─────────────────────────────────────────────────────────────────────────

  async deploy(name: string): Promise<AgentStatus> {
    return this.#serialized(name, async () => {
      const current = this.status(name);
      // Live already (serving, or in kubelet's restart backoff): OK as it is, like locally.
      if (current.state === "RUNNING" || current.state === "BACKOFF") return current;
      return this.#start(name, "deploy");
    });
  }

  async restart(name: string): Promise<AgentStatus> {
    return this.#serialized(name, async () => {
      const facts = this.#caches.facts(name);
      const replicas = this.#caches.deployment(name)?.spec?.replicas ?? 0;
      if (replicas === 0 || facts.state === "DISCOVERED") return this.#start(name, "deploy");
      return this.#start(name, "restart");
    });
  }

  async undeploy(name: string): Promise<AgentStatus> {
    this.#known(name);
    // A Deploy or Restart still under way gives way, as locally (OPERATION_SUPERSEDED).
    this.#starts.get(name)?.abort();
    return this.#serialized(name, async () => {
      this.#known(name);
      const target = objectName(name);
      if (!target.ok || this.#caches.deployment(name) === undefined) return this.status(name);
      await this.#client.scale(target.name, 0);
      return this.#waiters.wait(name, () =>
        this.#caches.pods(name).length === 0 ? this.status(name) : undefined,
      );
    });
  }

  // ── internals ──────────────────────────────────────────────────────────────────────────

  #refuseWhenClosed(): void {
    if (this.#closed) throw new DeployError("SERVER_SHUTTING_DOWN", "the server is shutting down");
  }

  /** Throws INVALID_AGENT_NAME / AGENT_NOT_FOUND like the local backend. */
  #known(name: string): void {
    checkAgentName(name);
    if (!this.#names().has(name)) throw agentNotFound(name);
  }

  #serialized<T>(name: string, operation: () => Promise<T>): Promise<T> {
    this.#refuseWhenClosed();
    this.#known(name);
    return this.#operations.run(name, operation);
  }

  /** Agents known by definition or by a managed Deployment or pod on the cluster. */
  #names(): Set<string> {
    const names = this.#caches.agentNames();
    for (const name of this.#entries.keys()) names.add(name);
    return names;
  }

  #compute(name: string): AgentStatus | undefined {
    const entry = this.#entries.get(name);
    const deployment = this.#caches.deployment(name);
    const pods = this.#caches.pods(name);
    if (entry === undefined && deployment === undefined && pods.length === 0) return undefined;
    const facts = clusterFacts(deployment, pods);
    if (facts.lastExit !== undefined) this.#lastExits.set(name, facts.lastExit);
    return agentView({
      name,
      entry,
      facts,
      baselineRestarts: this.#baselines.get(facts.instance) ?? 0,
      previous: this.#last.get(name),
      rememberedExit: this.#lastExits.get(name),
      defaultMaxRestarts: this.#options.defaults.maxRestarts,
      nowMs: this.#options.clock.now(),
    });
  }

  #changedObject(
    object: { metadata: { labels?: Readonly<Record<string, string>> } } | undefined,
    podName?: string,
  ): void {
    if (object === undefined) {
      // A delete: the object is gone from the cache, so recheck every agent (few of them).
      if (podName !== undefined) this.#baselines.delete(podName);
      for (const name of this.#names()) this.#changed(name);
      for (const name of [...this.#published.keys()])
        if (!this.#names().has(name)) this.#changed(name);
      return;
    }
    const name = object.metadata.labels?.[NAME_LABEL];
    if (name !== undefined) this.#changed(name);
  }

  /** Re-derives `name`'s status, publishes a change, enforces policy, wakes waiters. */
  #changed(name: string): void {
    const status = this.#compute(name);
    const previous = this.#last.get(name);
    if (status === undefined) {
      if (previous !== undefined) {
        this.#last.delete(name);
        this.#published.delete(name);
        this.events.publish({
          kind: "removed",
          name,
          previousState: previous.state,
          previousHealth: previous.health,
          status: previous,
          atMs: this.#options.clock.now(),
        });
      }
      this.#wake(name);
      return;
    }
    const key = JSON.stringify({ ...status, stateSinceMs: 0 });
    if (this.#published.get(name) !== key) {
      this.#published.set(name, key);
      this.#last.set(name, status);
      this.events.publish({
        kind: "change",
        name,
        previousState: previous?.state ?? status.state,
        previousHealth: previous?.health ?? status.health,
        status,
        atMs: this.#options.clock.now(),
      });
    }
    this.#policy.enforce(
      name,
      status,
      this.#caches.facts(name),
      this.#caches.deployment(name)?.spec?.replicas ?? 0,
    );
    this.#wake(name);
  }

  /** After a relist: every agent again, and no history a watcher could resume from. */
  #resnapshot(): void {
    this.events.advancePast(this.events.revision + 1);
    this.#published.clear();
    for (const name of this.#names()) this.#changed(name);
  }

  #wake(name: string): void {
    this.#waiters.wake(name);
  }

  /** Resolves with the agent's next pod or container (name) after `previous`, or "" on abort. */
  async #nextInstance(name: string, previous: string, signal: AbortSignal): Promise<string> {
    const restarts = this.#caches.facts(name).container?.restartCount ?? 0;
    const next = await this.#waiters.next(
      name,
      () => {
        const facts = this.#caches.facts(name);
        const moved =
          facts.state === "RUNNING" &&
          (facts.instance !== previous || (facts.container?.restartCount ?? 0) !== restarts);
        return moved || !this.#names().has(name)
          ? (this.#compute(name) ?? this.status(name))
          : undefined;
      },
      signal,
    );
    return next?.instance ?? "";
  }

  /** Applies the agent's objects (a restart also sets restartedAt) and waits until it is Ready. */
  async #start(name: string, how: "deploy" | "restart"): Promise<AgentStatus> {
    const superseded = new AbortController();
    this.#starts.set(name, superseded);
    try {
      return await this.#startOnce(name, how, superseded.signal);
    } finally {
      if (this.#starts.get(name) === superseded) this.#starts.delete(name);
    }
  }

  async #startOnce(
    name: string,
    how: "deploy" | "restart",
    superseded: AbortSignal,
  ): Promise<AgentStatus> {
    const giveWay = (): void => {
      if (superseded.aborted) throw supersededError(name);
    };
    const plan = await planStart(name, this.#entries.get(name), {
      namespace: this.#client.namespace,
      version: this.#options.version,
      defaults: this.#options.defaults,
      readText: this.#options.readText ?? ((file) => readFile(file, "utf8")),
    });
    const { objects, definitionSha } = plan;
    // The restarts seen so far stop counting: a manual Deploy or Restart resets the budget.
    for (const pod of this.#caches.pods(name)) {
      const count = agentContainer(pod)?.restartCount ?? 0;
      if (pod.metadata.name !== undefined) this.#baselines.set(pod.metadata.name, count);
    }
    for (const object of objectsOf(objects)) {
      giveWay();
      await this.#client.apply(object);
    }
    giveWay();
    const restartedAt =
      how === "restart" ? new Date(this.#options.clock.now()).toISOString() : undefined;
    const patch = startPatch(
      this.#caches.deployment(name)?.metadata.annotations ?? {},
      restartedAt,
    );
    if (patch !== undefined) await this.#client.patchDeployment(objects.objectName, patch);

    const check = (): WaitOutcome => {
      const facts = this.#caches.facts(name);
      const baseline = this.#baselines.get(facts.instance) ?? 0;
      const progress = startProgress(name, facts, baseline, definitionSha, restartedAt);
      if (progress.kind === "waiting") return undefined;
      if (progress.kind === "ready") return this.status(name);
      if (progress.stopReason !== undefined) {
        this.#policy.stop(name, objects.objectName, progress.stopReason, facts.message);
      }
      return progress.error;
    };
    const onTimeout = (): Error => {
      const facts = this.#caches.facts(name);
      const timedOut = startTimedOut(name, facts);
      this.#policy.stop(name, objects.objectName, timedOut.stopReason, facts.message);
      return timedOut.error;
    };
    const podStartTimeoutMs = this.#options.podStartTimeoutMs ?? DEFAULT_POD_START_TIMEOUT_MS;
    return this.#waiters.wait(
      name,
      check,
      { ms: podStartTimeoutMs + plan.definition.deployment.startTimeoutMs, onTimeout },
      superseded,
    );
  }
}
