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
import type { AgentDefinition, DiscoveredAgent } from "../config/agent-definition.ts";
import type { AgentBackend, LogStreamOptions } from "../core/agent-backend.ts";
import { isValidAgentName } from "../core/agent-name.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import { runInBackground } from "../core/background-task.ts";
import type { Clock } from "../core/clock.ts";
import { DeployError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";
import { EventHub } from "../supervisor/event-hub.ts";
import type { ClusterClient } from "./cluster-client.ts";
import {
  type ClusterDeployment,
  type ClusterFacts,
  type ClusterPod,
  clusterFacts,
  RESTARTED_AT_ANNOTATION,
  STOP_MESSAGE_ANNOTATION,
  STOP_REASON_ANNOTATION,
} from "./cluster-state.ts";
import { Informer } from "./informer.ts";
import { DEFINITION_SHA_ANNOTATION, NAME_LABEL, objectName } from "./object-names.ts";
import { CONTAINER_NAME, objectsOf, type RenderOptions, renderAgent } from "./render.ts";

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

type Entry =
  | { readonly kind: "valid"; readonly definition: AgentDefinition }
  | {
      readonly kind: "invalid";
      readonly configPath: string;
      readonly message: string;
      readonly warnings: readonly string[];
    };

interface Waiter {
  readonly check: () => AgentStatus | Error | undefined;
  readonly resolve: (status: AgentStatus) => void;
  readonly reject: (error: Error) => void;
}

const DEFAULT_POD_START_TIMEOUT_MS = 300_000;

function supersededError(name: string): DeployError {
  return new DeployError("OPERATION_SUPERSEDED", `agent ${name}: an Undeploy took over`, {
    agent: name,
  });
}

export class KubernetesBackend implements AgentBackend {
  readonly events: EventHub;
  readonly #client: ClusterClient;
  readonly #options: KubernetesBackendOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #published = new Map<string, string>();
  readonly #last = new Map<string, AgentStatus>();
  /** The last container exit seen per agent (the pod that had it may be gone since). */
  readonly #lastExits = new Map<string, NonNullable<AgentStatus["lastExit"]>>();
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #queues = new Map<string, Promise<unknown>>();
  /** Container restarts already counted before the last Deploy/Restart or stable period, by pod. */
  readonly #baselines = new Map<string, number>();
  /** Agents whose budget or clean exit is being acted on (once per occurrence). */
  readonly #stopping = new Set<string>();
  readonly #stableTimers = new Map<string, NodeJS.Timeout>();
  /** The Deploy or Restart under way per agent; an Undeploy aborts it. */
  readonly #starts = new Map<string, AbortController>();
  readonly #lifetime = new AbortController();
  readonly #deployments: Informer<ClusterDeployment & { metadata: { name?: string } }>;
  readonly #pods: Informer<ClusterPod & { metadata: { name?: string } }>;
  #closed = false;

  constructor(options: KubernetesBackendOptions) {
    this.#options = options;
    this.#client = options.client;
    this.events = options.events ?? new EventHub();
    const common = { logger: options.logger, signal: this.#lifetime.signal };
    const onRelist = (): void => this.#resnapshot();
    this.#deployments = new Informer(options.client.deployments, {
      ...common,
      what: "deployments",
      onChange: (_name, object) => this.#changedObject(object),
      onRelist,
    });
    this.#pods = new Informer(options.client.pods, {
      ...common,
      what: "pods",
      onChange: (name, object) => {
        // Restarts from before this server first saw the pod are not counted against the
        // budget: they may be weeks old, and this server has no record of when they happened.
        if (object !== undefined && !this.#baselines.has(name)) {
          const container = object.status?.containerStatuses?.find(
            (c) => c.name === CONTAINER_NAME,
          );
          this.#baselines.set(name, container?.restartCount ?? 0);
        }
        this.#changedObject(object, name);
      },
      onRelist,
    });
  }

  /** Starts both caches; resolves once both hold a first list. */
  async start(): Promise<void> {
    await Promise.all([this.#deployments.start(), this.#pods.start()]);
    for (const name of this.#names()) this.#changed(name);
  }

  /** Stops the caches and every waiter; the agents keep running on the cluster. */
  close(): void {
    this.#closed = true;
    this.#lifetime.abort();
    for (const timer of this.#stableTimers.values()) clearTimeout(timer);
    for (const waiters of this.#waiters.values()) {
      for (const waiter of waiters) {
        waiter.reject(new DeployError("SERVER_SHUTTING_DOWN", "the server is shutting down"));
      }
    }
    this.#waiters.clear();
  }

  /** Relists seen by the caches (after 410 Gone). */
  get relists(): number {
    return this.#deployments.relists + this.#pods.relists;
  }

  /** Takes a discovery result: the definitions of the agents directory. */
  applyDiscovery(agents: readonly DiscoveredAgent[]): void {
    const seen = new Set<string>();
    for (const agent of agents) {
      const name = agent.kind === "valid" ? agent.definition.name : agent.name;
      seen.add(name);
      this.#entries.set(
        name,
        agent.kind === "valid"
          ? { kind: "valid", definition: agent.definition }
          : {
              kind: "invalid",
              configPath: agent.configPath,
              message: agent.message,
              warnings: agent.warnings,
            },
      );
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
    return this.#compute(name) ?? this.#missing(name);
  }

  list(): AgentStatus[] {
    return [...this.#names()]
      .sort()
      .map((name) => this.#compute(name))
      .filter((s) => s !== undefined);
  }

  async *streamLogs(name: string, options: LogStreamOptions): AsyncIterable<readonly string[]> {
    this.#known(name);
    let tail = options.tailLines;
    let pod = this.#facts(name).instance;
    let partial = "";
    for (;;) {
      if (pod !== "") {
        try {
          for await (const chunk of this.#client.podLog(pod, {
            container: CONTAINER_NAME,
            tailLines: tail,
            follow: options.follow,
            signal: options.signal,
          })) {
            const lines = (partial + chunk).split("\n");
            partial = lines.pop() ?? "";
            if (lines.length > 0) yield lines;
          }
        } catch (error) {
          this.#options.logger.debug("pod log ended", { pod, error: String(error) });
        }
      }
      if (!options.follow || options.signal.aborted || !this.#names().has(name)) break;
      // The container restarted or the pod was replaced: follow the next one from its start.
      const previous = pod;
      pod = await this.#nextInstance(name, previous, options.signal);
      tail = 0;
      if (options.signal.aborted) break;
    }
    if (partial !== "") yield [partial];
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
      const facts = this.#facts(name);
      const replicas = this.#deployment(name)?.spec?.replicas ?? 0;
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
      if (!target.ok || this.#deployment(name) === undefined) return this.status(name);
      await this.#client.scale(target.name, 0);
      return this.#wait(name, () =>
        this.#podsOf(name).length === 0 ? this.status(name) : undefined,
      );
    });
  }

  // ── internals ──────────────────────────────────────────────────────────────────────────

  #refuseWhenClosed(): void {
    if (this.#closed) throw new DeployError("SERVER_SHUTTING_DOWN", "the server is shutting down");
  }

  /** Throws INVALID_AGENT_NAME / AGENT_NOT_FOUND like the local backend. */
  #known(name: string): void {
    if (!isValidAgentName(name)) {
      throw new DeployError(
        "INVALID_AGENT_NAME",
        name === ""
          ? "agent name is empty"
          : "agent name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
      );
    }
    if (!this.#names().has(name)) {
      throw new DeployError("AGENT_NOT_FOUND", `agent ${name} not found`, { agent: name });
    }
  }

  #missing(name: string): never {
    throw new DeployError("AGENT_NOT_FOUND", `agent ${name} not found`, { agent: name });
  }

  #serialized<T>(name: string, operation: () => Promise<T>): Promise<T> {
    this.#refuseWhenClosed();
    this.#known(name);
    const previous = this.#queues.get(name) ?? Promise.resolve();
    const next = previous.then(operation, operation);
    // The queue's tail settles either way (the operation's outcome is the caller's, through
    // `next`) and forgets itself when nothing was queued behind it.
    const forget = (): void => {
      if (this.#queues.get(name) === settled) this.#queues.delete(name);
    };
    const settled = next.then(forget, forget);
    this.#queues.set(name, settled);
    return next;
  }

  /** Agents known by definition or by a managed Deployment or pod on the cluster. */
  #names(): Set<string> {
    const names = new Set(this.#entries.keys());
    for (const object of [...this.#deployments.list(), ...this.#pods.list()]) {
      const agent = object.metadata.labels?.[NAME_LABEL];
      if (agent !== undefined) names.add(agent);
    }
    return names;
  }

  #deployment(name: string): ClusterDeployment | undefined {
    return this.#deployments.list().find((d) => d.metadata.labels?.[NAME_LABEL] === name);
  }

  #podsOf(name: string): ClusterPod[] {
    return this.#pods.list().filter((p) => p.metadata.labels?.[NAME_LABEL] === name);
  }

  #facts(name: string): ClusterFacts {
    return clusterFacts(this.#deployment(name), this.#podsOf(name));
  }

  #compute(name: string): AgentStatus | undefined {
    const entry = this.#entries.get(name);
    const deployment = this.#deployment(name);
    const pods = this.#podsOf(name);
    if (entry === undefined && deployment === undefined && pods.length === 0) return undefined;
    const facts = clusterFacts(deployment, pods);
    if (facts.lastExit !== undefined) this.#lastExits.set(name, facts.lastExit);
    const definition = entry?.kind === "valid" ? entry.definition : undefined;
    const invalid = entry?.kind === "invalid" ? entry : undefined;
    const podName = facts.instance;
    const restarts = Math.max(
      0,
      (facts.container?.restartCount ?? 0) - (this.#baselines.get(podName) ?? 0),
    );
    const notLive =
      facts.state === "DISCOVERED" || facts.state === "STOPPED" || facts.state === "FAILED";
    const state = invalid !== undefined && notLive ? "INVALID" : facts.state;
    const previous = this.#last.get(name);
    const sameState = previous?.state === state && previous.stateReason === facts.reason;
    const now = this.#options.clock.now();
    return {
      name,
      state,
      health: facts.health,
      port: notLive ? 0 : this.#port(definition),
      pid: 0,
      restartCount: restarts,
      maxRestarts: definition?.deployment.maxRestarts ?? this.#options.defaults.maxRestarts,
      configPath: definition?.configPath ?? invalid?.configPath ?? "",
      version: definition?.version ?? "",
      description: definition?.description ?? "",
      capabilities: definition?.capabilities ?? [],
      startTimeMs: facts.startTimeMs,
      stateReason: state === "INVALID" ? "CONFIG_INVALID" : facts.reason,
      stateMessage: state === "INVALID" ? (invalid?.message ?? "") : facts.message,
      stateSinceMs: sameState ? previous.stateSinceMs : now,
      lastExit: facts.lastExit ?? this.#lastExits.get(name),
      nextRestartAtMs: undefined,
      lastHealthCheckMs: undefined,
      healthMessage: facts.health === "UNHEALTHY" ? facts.message : "",
      memoryBytes: 0,
      warnings: definition?.warnings ?? invalid?.warnings ?? [],
      definitionRemoved: entry === undefined,
      logPath: "",
      host: facts.host,
      instance: facts.instance,
    };
  }

  #port(definition: AgentDefinition | undefined): number {
    if (definition === undefined) return 0;
    return definition.deployment.port === 0 ? 8100 : definition.deployment.port;
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
    this.#enforce(name, status);
    this.#wake(name);
  }

  /** After a relist: every agent again, and no history a watcher could resume from. */
  #resnapshot(): void {
    this.events.advancePast(this.events.revision + 1);
    this.#published.clear();
    for (const name of this.#names()) this.#changed(name);
  }

  /** The restart budget, a clean exit, and the stable-period reset of the budget. */
  #enforce(name: string, status: AgentStatus): void {
    const facts = this.#facts(name);
    const replicas = this.#deployment(name)?.spec?.replicas ?? 0;
    const target = objectName(name);
    if (replicas === 0 || !target.ok || this.#stopping.has(name) || this.#closed) return;
    if (facts.exitedCleanly) {
      this.#stopItself(name, target.name, "EXITED", "exited with code 0: the agent stopped itself");
      return;
    }
    if (status.restartCount > status.maxRestarts) {
      this.#stopItself(
        name,
        target.name,
        "CRASH_LOOP",
        `${status.restartCount} container restarts, more than max_restarts ${status.maxRestarts}: scaled to 0`,
      );
      return;
    }
    this.#scheduleStableReset(name, status);
  }

  /**
   * Records why on the Deployment and scales it to 0, in the background. A failure is logged;
   * the agent is then no longer being stopped, and its next cache change tries again.
   */
  #stopItself(name: string, object: string, reason: string, message: string): void {
    this.#stopping.add(name);
    const { logger } = this.#options;
    logger.info("stopping agent on the cluster", { agent: name, reason, message });
    runInBackground(
      { logger, fields: { agent: name, reason } },
      "stop on the cluster",
      async () => {
        try {
          await this.#client.patchDeployment(object, {
            metadata: {
              annotations: { [STOP_REASON_ANNOTATION]: reason, [STOP_MESSAGE_ANNOTATION]: message },
            },
          });
          await this.#client.scale(object, 0);
        } finally {
          this.#stopping.delete(name);
        }
      },
    );
  }

  /** Once healthy for `stable_after`, restarts so far stop counting (SPEC §2). */
  #scheduleStableReset(name: string, status: AgentStatus): void {
    const existing = this.#stableTimers.get(name);
    if (existing !== undefined) clearTimeout(existing);
    this.#stableTimers.delete(name);
    const entry = this.#entries.get(name);
    if (status.state !== "RUNNING" || status.health !== "HEALTHY" || status.restartCount === 0)
      return;
    if (entry?.kind !== "valid" || status.startTimeMs === undefined) return;
    const dueInMs =
      status.startTimeMs + entry.definition.deployment.stableAfterMs - this.#options.clock.now();
    const reset = (): void => {
      this.#stableTimers.delete(name);
      const facts = this.#facts(name);
      if (
        facts.state === "RUNNING" &&
        facts.health === "HEALTHY" &&
        facts.container !== undefined
      ) {
        this.#baselines.set(facts.instance, facts.container.restartCount ?? 0);
        this.#changed(name);
      }
    };
    if (dueInMs <= 0) reset();
    else this.#stableTimers.set(name, setTimeout(reset, dueInMs).unref());
  }

  #wake(name: string): void {
    for (const waiter of [...(this.#waiters.get(name) ?? [])]) {
      let outcome: AgentStatus | Error | undefined;
      try {
        outcome = waiter.check();
      } catch (error) {
        outcome = error as Error;
      }
      if (outcome === undefined) continue;
      this.#waiters.get(name)?.delete(waiter);
      if (outcome instanceof Error) waiter.reject(outcome);
      else waiter.resolve(outcome);
    }
  }

  /** Resolves when `check` gives a status, rejects when it gives an error; checked on every change. */
  #wait(
    name: string,
    check: () => AgentStatus | Error | undefined,
    timeout?: { readonly ms: number; readonly onTimeout: () => Error },
    superseded?: AbortSignal,
  ): Promise<AgentStatus> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onSuperseded = (): void => {
        this.#waiters.get(name)?.delete(waiter);
        clearTimeout(timer);
        reject(supersededError(name));
      };
      superseded?.addEventListener("abort", onSuperseded, { once: true });
      const waiter: Waiter = {
        check,
        resolve: (status) => {
          clearTimeout(timer);
          superseded?.removeEventListener("abort", onSuperseded);
          resolve(status);
        },
        reject: (error) => {
          clearTimeout(timer);
          superseded?.removeEventListener("abort", onSuperseded);
          reject(error);
        },
      };
      if (superseded?.aborted) {
        onSuperseded();
        return;
      }
      let set = this.#waiters.get(name);
      if (set === undefined) {
        set = new Set();
        this.#waiters.set(name, set);
      }
      set.add(waiter);
      if (timeout !== undefined) {
        timer = setTimeout(() => {
          this.#waiters.get(name)?.delete(waiter);
          reject(timeout.onTimeout());
        }, timeout.ms);
      }
      this.#wake(name);
    });
  }

  /** Resolves with the agent's next pod or container (name) after `previous`, or "" on abort. */
  #nextInstance(name: string, previous: string, signal: AbortSignal): Promise<string> {
    const restarts = this.#facts(name).container?.restartCount ?? 0;
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.#waiters.get(name)?.delete(waiter);
        resolve("");
      };
      const waiter: Waiter = {
        check: () => {
          const facts = this.#facts(name);
          const moved =
            facts.state === "RUNNING" &&
            (facts.instance !== previous || (facts.container?.restartCount ?? 0) !== restarts);
          return moved || !this.#names().has(name)
            ? (this.#compute(name) ?? this.status(name))
            : undefined;
        },
        resolve: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(this.#facts(name).instance);
        },
        reject: () => resolve(""),
      };
      signal.addEventListener("abort", onAbort, { once: true });
      let set = this.#waiters.get(name);
      if (set === undefined) {
        set = new Set();
        this.#waiters.set(name, set);
      }
      set.add(waiter);
    });
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
    const entry = this.#entries.get(name);
    if (entry === undefined) {
      throw new DeployError("AGENT_CONFIG_INVALID", `agent ${name} has no definition any more`, {
        agent: name,
      });
    }
    if (entry.kind === "invalid") {
      throw new DeployError("AGENT_CONFIG_INVALID", entry.message, { agent: name });
    }
    const definition = entry.definition;
    const namespace = this.#client.namespace;
    if (
      definition.kubernetes.namespace !== undefined &&
      definition.kubernetes.namespace !== namespace
    ) {
      throw new DeployError(
        "AGENT_CONFIG_INVALID",
        `${definition.configPath}: kubernetes.namespace: ${definition.kubernetes.namespace} is not the server's namespace ${namespace}`,
        { agent: name },
      );
    }
    let text: string;
    try {
      text = await (this.#options.readText ?? ((file) => readFile(file, "utf8")))(
        definition.configPath,
      );
    } catch (error) {
      throw new DeployError(
        "AGENT_CONFIG_INVALID",
        `${definition.configPath}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
        { agent: name },
      );
    }
    const rendered = renderAgent(
      { definition, text },
      {
        namespace,
        version: this.#options.version,
        defaults: this.#options.defaults,
      },
    );
    if (!rendered.ok) {
      throw new DeployError("AGENT_CONFIG_INVALID", rendered.problems.join("; "), { agent: name });
    }
    const objects = rendered.objects;
    // The restarts seen so far stop counting: a manual Deploy or Restart resets the budget.
    for (const pod of this.#podsOf(name)) {
      const count =
        pod.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME)?.restartCount ?? 0;
      if (pod.metadata.name !== undefined) this.#baselines.set(pod.metadata.name, count);
    }
    for (const object of objectsOf(objects)) {
      giveWay();
      await this.#client.apply(object);
    }
    giveWay();
    const live = this.#deployment(name)?.metadata.annotations ?? {};
    const patch: Record<string, unknown> = {};
    if (live[STOP_REASON_ANNOTATION] !== undefined || live[STOP_MESSAGE_ANNOTATION] !== undefined) {
      patch.metadata = {
        annotations: { [STOP_REASON_ANNOTATION]: null, [STOP_MESSAGE_ANNOTATION]: null },
      };
    }
    let restartedAt: string | undefined;
    if (how === "restart") {
      restartedAt = new Date(this.#options.clock.now()).toISOString();
      patch.spec = {
        template: { metadata: { annotations: { [RESTARTED_AT_ANNOTATION]: restartedAt } } },
      };
    }
    if (Object.keys(patch).length > 0)
      await this.#client.patchDeployment(objects.objectName, patch);

    // biome-ignore lint/suspicious/noExplicitAny: reading one annotation of a plain object
    const sha = (objects.deployment as any).spec.template.metadata.annotations[
      DEFINITION_SHA_ANNOTATION
    ] as string;
    const startTimeoutMs = definition.deployment.startTimeoutMs;
    const podStartTimeoutMs = this.#options.podStartTimeoutMs ?? DEFAULT_POD_START_TIMEOUT_MS;
    const ours = (pod: ClusterPod | undefined): boolean =>
      pod !== undefined &&
      pod.metadata.deletionTimestamp === undefined &&
      pod.metadata.annotations?.[DEFINITION_SHA_ANNOTATION] === sha &&
      (restartedAt === undefined ||
        pod.metadata.annotations?.[RESTARTED_AT_ANNOTATION] === restartedAt);
    const check = (): AgentStatus | Error | undefined => {
      const facts = this.#facts(name);
      if (!ours(facts.pod)) return undefined;
      if (facts.state === "RUNNING" && facts.health === "HEALTHY") return this.status(name);
      if (facts.reason === "IMAGE_PULL_FAILED") {
        this.#stopItself(name, objects.objectName, "IMAGE_PULL_FAILED", facts.message);
        return new DeployError(
          "AGENT_START_FAILED",
          `agent ${name}: the image cannot be pulled: ${facts.message}`,
          {
            agent: name,
          },
        );
      }
      const restarts =
        (facts.container?.restartCount ?? 0) - (this.#baselines.get(facts.instance) ?? 0);
      const exitedNow = facts.container?.state?.terminated !== undefined;
      if ((restarts > 0 || exitedNow) && facts.lastExit !== undefined) {
        const exit = facts.lastExit;
        const how = exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.code}`;
        return new DeployError(
          "AGENT_EXITED_DURING_START",
          `agent ${name} exited during start (${how})`,
          {
            agent: name,
          },
        );
      }
      return undefined;
    };
    const onTimeout = (): Error => {
      const facts = this.#facts(name);
      const reason = facts.reason === "UNSCHEDULABLE" ? "UNSCHEDULABLE" : "START_TIMEOUT";
      this.#stopItself(name, objects.objectName, reason, facts.message);
      return new DeployError(
        "AGENT_START_TIMEOUT",
        `agent ${name} was not ready in time (${facts.reason}: ${facts.message})`,
        { agent: name },
      );
    };
    return this.#wait(
      name,
      check,
      { ms: podStartTimeoutMs + startTimeoutMs, onTimeout },
      superseded,
    );
  }
}
