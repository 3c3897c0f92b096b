/**
 * A small simulator of the Kubernetes API server, kubelet and Deployment controller, enough for
 * `@kubernetes/client-node` and the Kubernetes backend: an HTTP server on 127.0.0.1:0.
 *
 * Each behaviour follows the API's documentation; what is simplified is said so:
 *
 * - Server-side apply: `PATCH` with `Content-Type: application/apply-patch+yaml`, `fieldManager`
 *   required, creates the object when missing; fields are owned per (manager, operation) in
 *   `metadata.managedFields` (`fieldsType: FieldsV1`); a field the applier sets to another value
 *   than its owner's is a 409 Conflict unless `force=true`, which moves the ownership; fields the
 *   manager applied before and leaves out now are removed unless another manager owns them.
 *   Simplification: lists are atomic (no merge keys).
 *   https://kubernetes.io/docs/reference/using-api/server-side-apply/
 * - JSON merge patch (`application/merge-patch+json`, RFC 7386): null deletes; an update takes
 *   ownership of the fields it sets without conflicts (same page, "Conflicts").
 * - The scale subresource: `PATCH .../deployments/<name>/scale` sets `spec.replicas`.
 *   https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/
 * - Lists carry `metadata.resourceVersion`; watches (`watch=true`) replay the events after the
 *   given resourceVersion, then stream new ones, one JSON object per line; a resourceVersion
 *   older than the compacted history gets an ERROR event with a Status of code 410 (Expired);
 *   `allowWatchBookmarks=true` gets BOOKMARK events carrying only a resourceVersion. Equality
 *   label selectors only. https://kubernetes.io/docs/reference/using-api/api-concepts/
 * - Deployment controller, strategy Recreate: a Deployment whose pod template changed first has
 *   its old pods terminated, then one new pod per replica is created from the template (labels
 *   and annotations copied). https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#recreate-deployment
 * - Kubelet: what happens to a pod (scheduled, image pulled, started, ready, crashing) is driven
 *   by the test through `behave` and `setContainer`; deleting a pod sets deletionTimestamp, and
 *   the pod goes away when the test (or the default behaviour) finishes its termination.
 * - Pod logs: `GET .../pods/<name>/log?container=&tailLines=&follow=` as text/plain.
 * - Auth: a bearer token. Everything else answers 404.
 */
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { parse as parseYaml } from "yaml";

// biome-ignore lint/suspicious/noExplicitAny: the JSON objects the API moves around
type Json = Record<string, any>;

export const SIM_TOKEN = "sim-token";
export const SIM_NAMESPACE = "agents";

type Resource = "configmaps" | "services" | "deployments" | "pods";

const KINDS: Record<Resource, { kind: string; apiVersion: string }> = {
  configmaps: { kind: "ConfigMap", apiVersion: "v1" },
  services: { kind: "Service", apiVersion: "v1" },
  deployments: { kind: "Deployment", apiVersion: "apps/v1" },
  pods: { kind: "Pod", apiVersion: "v1" },
};

export interface SimRequest {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly contentType: string;
}

interface HistoryEvent {
  readonly rv: number;
  readonly resource: Resource;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly object: Json;
}

interface WatchConnection {
  readonly resource: Resource;
  readonly selector: Record<string, string>;
  readonly bookmarks: boolean;
  readonly res: ServerResponse;
}

/** What the simulated kubelet does with a new pod. */
export type PodBehaviour =
  | "ready"
  | "unschedulable"
  | "image-pull-failure"
  | "crash"
  | "exit-0"
  | "manual";

const clone = <T>(value: T): T => structuredClone(value);

function leafPaths(value: unknown, prefix: string[] = [], out: string[][] = []): string[][] {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const entries = Object.entries(value as Json);
    if (entries.length === 0) out.push(prefix);
    for (const [key, child] of entries) leafPaths(child, [...prefix, key], out);
  } else {
    out.push(prefix);
  }
  return out;
}

/** A leaf path as one string; JSON, since keys such as label names hold dots. */
const pathKey = (path: string[]): string => JSON.stringify(path);
const pathOf = (key: string): string[] => JSON.parse(key) as string[];
const IGNORED = new Set(
  [["apiVersion"], ["kind"], ["metadata", "name"], ["metadata", "namespace"]].map(pathKey),
);

function getPath(object: Json, path: string[]): unknown {
  let at: unknown = object;
  for (const key of path) {
    if (at === null || typeof at !== "object") return undefined;
    at = (at as Json)[key];
  }
  return at;
}

function deletePath(object: Json, path: string[]): void {
  const parent = getPath(object, path.slice(0, -1));
  if (parent !== null && typeof parent === "object") delete (parent as Json)[path.at(-1) ?? ""];
}

function setPath(object: Json, path: string[], value: unknown): void {
  let at = object;
  for (const key of path.slice(0, -1)) {
    if (at[key] === null || typeof at[key] !== "object" || Array.isArray(at[key])) at[key] = {};
    at = at[key];
  }
  at[path.at(-1) ?? ""] = clone(value);
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return clone(patch);
  const out: Json =
    target !== null && typeof target === "object" && !Array.isArray(target)
      ? { ...(target as Json) }
      : {};
  for (const [key, value] of Object.entries(patch as Json)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/** FieldsV1 from leaf paths: `{"f:spec": {"f:replicas": {}}}`. */
function fieldsV1(paths: Iterable<string>): Json {
  const root: Json = {};
  for (const path of paths) {
    let at = root;
    for (const key of pathOf(path)) {
      at[`f:${key}`] ??= {};
      at = at[`f:${key}`];
    }
  }
  return root;
}

function selectorOf(text: string | null): Record<string, string> {
  const selector: Record<string, string> = {};
  for (const part of (text ?? "").split(",")) {
    if (part === "") continue;
    const [key, value] = part.split("=");
    selector[key ?? ""] = value ?? "";
  }
  return selector;
}

function matches(object: Json, selector: Record<string, string>): boolean {
  const labels = object.metadata?.labels ?? {};
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

export class KubeApiSimulator {
  readonly #server: Server;
  readonly url: string;
  /** Objects by `<resource>/<namespace>/<name>`. */
  readonly #objects = new Map<string, Json>();
  /** Field ownership per object: `<manager>|<operation>` → leaf paths. */
  readonly #owners = new Map<string, Map<string, Set<string>>>();
  #rv = 100;
  #history: HistoryEvent[] = [];
  #compactedBelow = 0;
  readonly #watches = new Set<WatchConnection>();
  readonly #logs = new Map<string, string[]>();
  readonly #logFollowers = new Map<string, Set<ServerResponse>>();
  #podSerial = 0;
  /** What kubelet does with the next pods (the test may change it at any time). */
  behaviour: PodBehaviour = "ready";
  /** Keep terminating pods until `finishTermination` (else they go at once). */
  holdTermination = false;
  /** Every request: method, path and query, content type. */
  readonly requests: SimRequest[] = [];
  readonly #requestWaiters = new Set<{
    predicate: (r: SimRequest) => boolean;
    resolve: (r: SimRequest) => void;
  }>();

  private constructor(server: Server, url: string) {
    this.#server = server;
    this.url = url;
  }

  static async start(): Promise<KubeApiSimulator> {
    let sim: KubeApiSimulator | undefined;
    const server = createServer((req, res) => {
      void sim?.handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    sim = new KubeApiSimulator(server, `http://127.0.0.1:${port}`);
    return sim;
  }

  /** A kubeconfig naming this server, a bearer token and the namespace. */
  kubeconfig(namespace = SIM_NAMESPACE): string {
    return `apiVersion: v1
kind: Config
clusters:
  - name: sim
    cluster:
      server: ${this.url}
      # client-node refuses plain HTTP unless TLS verification is off (there is no TLS here).
      insecure-skip-tls-verify: true
users:
  - name: sim
    user:
      token: ${SIM_TOKEN}
contexts:
  - name: sim
    context:
      cluster: sim
      user: sim
      namespace: ${namespace}
current-context: sim
`;
  }

  async close(): Promise<void> {
    for (const watch of this.#watches) watch.res.destroy();
    for (const followers of this.#logFollowers.values()) for (const res of followers) res.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ── what tests look at and drive ───────────────────────────────────────────────────────

  object(resource: Resource, name: string, namespace = SIM_NAMESPACE): Json | undefined {
    const found = this.#objects.get(`${resource}/${namespace}/${name}`);
    return found === undefined ? undefined : clone(found);
  }

  pods(namespace = SIM_NAMESPACE): Json[] {
    return [...this.#objects.entries()]
      .filter(([key]) => key.startsWith(`pods/${namespace}/`))
      .map(([, pod]) => clone(pod));
  }

  /** Changes a pod's `agent` container status (merged), as kubelet would report it. */
  setContainer(podName: string, status: Json, podStatus: Json = {}): void {
    const key = `pods/${SIM_NAMESPACE}/${podName}`;
    const pod = this.#objects.get(key);
    if (pod === undefined) throw new Error(`no pod ${podName}`);
    const current = pod.status.containerStatuses?.[0] ?? {
      name: "agent",
      restartCount: 0,
      ready: false,
    };
    pod.status = { ...pod.status, ...podStatus, containerStatuses: [{ ...current, ...status }] };
    this.#modified("pods", key, pod);
  }

  /** Kubelet restarts the container after a crash with `exitCode` (restartCount + 1). */
  crash(podName: string, exitCode: number, reason = "Error"): void {
    const pod = this.object("pods", podName);
    const count = pod?.status.containerStatuses?.[0]?.restartCount ?? 0;
    this.setContainer(podName, {
      ready: false,
      started: false,
      restartCount: count + 1,
      state: {
        waiting: { reason: "CrashLoopBackOff", message: "back-off restarting failed container" },
      },
      lastState: { terminated: { exitCode, reason, finishedAt: new Date().toISOString() } },
    });
  }

  /** Ends the termination of a pod being deleted (its DELETED event). */
  finishTermination(podName: string): void {
    const key = `pods/${SIM_NAMESPACE}/${podName}`;
    const pod = this.#objects.get(key);
    if (pod === undefined) return;
    this.#objects.delete(key);
    this.#record("pods", "DELETED", pod);
    for (const res of this.#logFollowers.get(podName) ?? []) res.end();
    this.#logFollowers.delete(podName);
    for (const deployment of this.#deploymentsIn(SIM_NAMESPACE)) this.#reconcile(deployment);
  }

  appendLog(podName: string, line: string): void {
    const lines = this.#logs.get(podName) ?? [];
    lines.push(line);
    this.#logs.set(podName, lines);
    for (const res of this.#logFollowers.get(podName) ?? []) res.write(`${line}\n`);
  }

  /** Sends a BOOKMARK to every watch that asked for them. */
  bookmark(): void {
    for (const watch of this.#watches) {
      if (!watch.bookmarks) continue;
      const { kind, apiVersion } = KINDS[watch.resource];
      watch.res.write(
        `${JSON.stringify({ type: "BOOKMARK", object: { kind, apiVersion, metadata: { resourceVersion: String(this.#rv) } } })}\n`,
      );
    }
  }

  /**
   * Compacts the event history (as etcd does) and ends every watch: clients that reconnect
   * from an older resourceVersion get 410 Gone.
   */
  expireWatches(): void {
    this.#compactedBelow = this.#rv + 1;
    this.#history = [];
    for (const watch of this.#watches) watch.res.end();
    this.#watches.clear();
  }

  /** Resolves with the first request from now on that `predicate` accepts. */
  nextRequest(predicate: (request: SimRequest) => boolean): Promise<SimRequest> {
    return new Promise((resolve) => this.#requestWaiters.add({ predicate, resolve }));
  }

  /** Ends every watch as an API server does after its timeout (history kept: clients resume). */
  endWatches(): void {
    for (const watch of this.#watches) watch.res.end();
    this.#watches.clear();
  }

  /** Moves the resourceVersion on, as writes to objects nobody here watches do. */
  touch(): void {
    this.#rv += 1;
  }

  /** The current resourceVersion. */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** Watches open now, by resource. */
  watchCount(resource: Resource): number {
    return [...this.#watches].filter((w) => w.resource === resource).length;
  }

  /** Field managers of an object: `manager|operation` → owned leaf paths. */
  managers(resource: Resource, name: string): Record<string, string[]> {
    const owners = this.#owners.get(`${resource}/${SIM_NAMESPACE}/${name}`) ?? new Map();
    return Object.fromEntries(
      [...owners].map(([k, v]) => [k, [...v].map((p) => pathOf(p).join(".")).sort()]),
    );
  }

  /** Changes an object as another client would (merge patch by `manager`). */
  editAs(manager: string, resource: Resource, name: string, patch: Json): void {
    const key = `${resource}/${SIM_NAMESPACE}/${name}`;
    const existing = this.#objects.get(key);
    if (existing === undefined) throw new Error(`no ${key}`);
    this.#update(resource, key, existing, patch, manager);
  }

  // ── HTTP ───────────────────────────────────────────────────────────────────────────────

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.url);
    const request: SimRequest = {
      method: req.method ?? "",
      path: url.pathname,
      query: url.search,
      contentType: String(req.headers["content-type"] ?? ""),
    };
    this.requests.push(request);
    try {
      await this.#route(req, res, url);
    } finally {
      // Told once the request is in place: a watch registered, a log follower attached.
      for (const waiter of [...this.#requestWaiters]) {
        if (!waiter.predicate(request)) continue;
        this.#requestWaiters.delete(waiter);
        waiter.resolve(request);
      }
    }
  }

  async #route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (req.headers.authorization !== `Bearer ${SIM_TOKEN}`) {
      this.#status(res, 401, "Unauthorized", "missing or wrong bearer token");
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const bodyText = Buffer.concat(chunks).toString("utf8");
    const m =
      /^\/(?:api\/v1|apis\/apps\/v1)\/namespaces\/([^/]+)\/(configmaps|services|deployments|pods)(?:\/([^/]+))?(?:\/(scale|log))?$/.exec(
        url.pathname,
      );
    if (m === null) {
      this.#status(res, 404, "NotFound", `no route ${url.pathname}`);
      return;
    }
    const [, namespace = "", resource, name, sub] = m as unknown as [
      string,
      string,
      Resource,
      string?,
      string?,
    ];
    const key = `${resource}/${namespace}/${name ?? ""}`;
    try {
      if (req.method === "GET" && name === undefined) {
        const selector = selectorOf(url.searchParams.get("labelSelector"));
        if (url.searchParams.get("watch") === "true")
          return this.#watch(res, resource, namespace, selector, url);
        const items = [...this.#objects.entries()]
          .filter(([k, o]) => k.startsWith(`${resource}/${namespace}/`) && matches(o, selector))
          .map(([, o]) => clone(o));
        const { kind, apiVersion } = KINDS[resource];
        return this.#json(res, 200, {
          kind: `${kind}List`,
          apiVersion,
          metadata: { resourceVersion: String(this.#rv) },
          items,
        });
      }
      if (req.method === "GET" && sub === "log" && resource === "pods" && name !== undefined) {
        return this.#podLog(res, name, url);
      }
      if (req.method === "GET" && name !== undefined) {
        const found = this.#objects.get(key);
        return found === undefined
          ? this.#status(res, 404, "NotFound", `${resource} "${name}" not found`)
          : this.#json(res, 200, found);
      }
      if (req.method === "PATCH" && name !== undefined) {
        const type = String(req.headers["content-type"] ?? "").split(";")[0];
        const manager = url.searchParams.get("fieldManager") ?? "";
        if (type === "application/apply-patch+yaml") {
          if (manager === "") {
            this.#status(res, 400, "BadRequest", "fieldManager is required for apply requests");
            return;
          }
          const body = parseYaml(bodyText) as Json;
          return this.#apply(
            res,
            resource,
            key,
            namespace,
            name,
            body,
            manager,
            url.searchParams.get("force") === "true",
          );
        }
        if (type === "application/merge-patch+json") {
          const existing = this.#objects.get(key);
          if (existing === undefined) {
            this.#status(res, 404, "NotFound", `${resource} "${name}" not found`);
            return;
          }
          const patch = JSON.parse(bodyText) as Json;
          if (sub === "scale") {
            const replicas = patch.spec?.replicas;
            this.#update(resource, key, existing, { spec: { replicas } }, manager || "unknown");
            return this.#json(res, 200, {
              kind: "Scale",
              apiVersion: "autoscaling/v1",
              metadata: { name, namespace },
              spec: { replicas },
              status: { replicas },
            });
          }
          return this.#json(
            res,
            200,
            this.#update(resource, key, existing, patch, manager || "unknown"),
          );
        }
        this.#status(res, 415, "UnsupportedMediaType", `unsupported patch type ${type}`);
        return;
      }
      this.#status(res, 405, "MethodNotAllowed", `${req.method} not supported here`);
      return;
    } catch (error) {
      this.#status(res, 500, "InternalError", String(error));
      return;
    }
  }

  #json(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  }

  #status(
    res: ServerResponse,
    code: number,
    reason: string,
    message: string,
    details?: Json,
  ): void {
    this.#json(res, code, {
      kind: "Status",
      apiVersion: "v1",
      status: "Failure",
      message,
      reason,
      code,
      ...(details ? { details } : {}),
    });
  }

  #ownersOf(key: string): Map<string, Set<string>> {
    let owners = this.#owners.get(key);
    if (owners === undefined) {
      owners = new Map();
      this.#owners.set(key, owners);
    }
    return owners;
  }

  #withManagedFields(key: string, object: Json): Json {
    const owners = this.#ownersOf(key);
    object.metadata.managedFields = [...owners]
      .filter(([, paths]) => paths.size > 0)
      .map(([id, paths]) => {
        const [manager, operation] = id.split("|");
        return {
          manager,
          operation,
          apiVersion: object.apiVersion,
          time: new Date().toISOString(),
          fieldsType: "FieldsV1",
          fieldsV1: fieldsV1(paths),
        };
      });
    return object;
  }

  #apply(
    res: ServerResponse,
    resource: Resource,
    key: string,
    namespace: string,
    name: string,
    body: Json,
    manager: string,
    force: boolean,
  ): void {
    const owners = this.#ownersOf(key);
    const me = `${manager}|Apply`;
    const applied = new Set(
      leafPaths(body)
        .map(pathKey)
        .filter((p) => !IGNORED.has(p)),
    );
    const existing = this.#objects.get(key);
    const next: Json = existing === undefined ? {} : clone(existing);
    if (existing !== undefined) {
      const conflicts: Json[] = [];
      for (const path of applied) {
        const parts = pathOf(path);
        const mine = JSON.stringify(getPath(body, parts));
        const theirs = JSON.stringify(getPath(existing, parts));
        for (const [owner, paths] of owners) {
          if (owner === me || !paths.has(path) || mine === theirs) continue;
          conflicts.push({
            type: "FieldManagerConflict",
            message: `conflict with "${owner.split("|")[0]}"`,
            field: `.${pathOf(path).join(".")}`,
          });
        }
      }
      if (conflicts.length > 0 && !force) {
        this.#status(res, 409, "Conflict", `Apply failed with ${conflicts.length} conflicts`, {
          causes: conflicts,
        });
        return;
      }
      for (const [owner, paths] of owners)
        if (owner !== me) for (const path of applied) paths.delete(path);
      // Fields this manager applied before and no longer names go, unless someone else owns them.
      for (const path of owners.get(me) ?? []) {
        if (applied.has(path)) continue;
        const ownedElsewhere = [...owners].some(([o, ps]) => o !== me && ps.has(path));
        if (!ownedElsewhere) deletePath(next, pathOf(path));
      }
    }
    for (const path of applied) setPath(next, pathOf(path), getPath(body, pathOf(path)));
    owners.set(me, applied);
    next.apiVersion = body.apiVersion;
    next.kind = body.kind;
    next.metadata = { ...next.metadata, name, namespace };
    const created = existing === undefined;
    this.#store(resource, key, next, created);
    this.#json(res, created ? 201 : 200, this.#objects.get(key));
  }

  #update(resource: Resource, key: string, existing: Json, patch: Json, manager: string): Json {
    const owners = this.#ownersOf(key);
    const me = `${manager}|Update`;
    const mine = owners.get(me) ?? new Set<string>();
    for (const path of leafPaths(patch).map(pathKey)) {
      if (getPath(patch, pathOf(path)) === null) {
        for (const paths of owners.values()) paths.delete(path);
        continue;
      }
      for (const [owner, paths] of owners) if (owner !== me) paths.delete(path);
      mine.add(path);
    }
    owners.set(me, mine);
    const next = mergePatch(existing, patch) as Json;
    this.#store(resource, key, next, false);
    return clone(this.#objects.get(key) as Json);
  }

  #store(resource: Resource, key: string, object: Json, created: boolean): void {
    const old = this.#objects.get(key);
    this.#rv += 1;
    object.metadata.resourceVersion = String(this.#rv);
    object.metadata.uid ??= createHash("sha1").update(key).digest("hex").slice(0, 16);
    object.metadata.creationTimestamp ??= new Date().toISOString();
    if (resource === "deployments") {
      const specChanged = JSON.stringify(old?.spec) !== JSON.stringify(object.spec);
      object.metadata.generation =
        (old?.metadata.generation ?? 0) + (specChanged || created ? 1 : 0);
    }
    this.#withManagedFields(key, object);
    this.#objects.set(key, object);
    this.#history.push({
      rv: this.#rv,
      resource,
      type: created ? "ADDED" : "MODIFIED",
      object: clone(object),
    });
    this.#broadcast(resource, created ? "ADDED" : "MODIFIED", object);
    if (resource === "deployments") this.#reconcile(object);
  }

  #modified(resource: Resource, key: string, object: Json): void {
    this.#rv += 1;
    object.metadata.resourceVersion = String(this.#rv);
    this.#objects.set(key, object);
    this.#record(resource, "MODIFIED", object);
  }

  #record(resource: Resource, type: HistoryEvent["type"], object: Json): void {
    if (type === "DELETED") {
      this.#rv += 1;
      object.metadata.resourceVersion = String(this.#rv);
    }
    this.#history.push({ rv: this.#rv, resource, type, object: clone(object) });
    this.#broadcast(resource, type, object);
  }

  #broadcast(resource: Resource, type: string, object: Json): void {
    for (const watch of this.#watches) {
      if (watch.resource !== resource || !matches(object, watch.selector)) continue;
      watch.res.write(`${JSON.stringify({ type, object })}\n`);
    }
  }

  #watch(
    res: ServerResponse,
    resource: Resource,
    namespace: string,
    selector: Record<string, string>,
    url: URL,
  ): void {
    res.writeHead(200, { "content-type": "application/json" });
    const from = Number(url.searchParams.get("resourceVersion") ?? "0");
    if (from > 0 && from < this.#compactedBelow) {
      res.end(
        `${JSON.stringify({ type: "ERROR", object: { kind: "Status", apiVersion: "v1", status: "Failure", message: `too old resource version: ${from} (${this.#compactedBelow})`, reason: "Expired", code: 410 } })}\n`,
      );
      return;
    }
    for (const event of this.#history) {
      if (event.rv <= from || event.resource !== resource) continue;
      if (
        !event.object.metadata?.namespace?.startsWith?.(namespace) &&
        event.object.metadata?.namespace !== namespace
      )
        continue;
      if (!matches(event.object, selector)) continue;
      res.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
    }
    const watch: WatchConnection = {
      resource,
      selector,
      bookmarks: url.searchParams.get("allowWatchBookmarks") === "true",
      res,
    };
    this.#watches.add(watch);
    res.on("close", () => this.#watches.delete(watch));
  }

  #podLog(res: ServerResponse, name: string, url: URL): void {
    if (!this.#objects.has(`pods/${SIM_NAMESPACE}/${name}`)) {
      this.#status(res, 404, "NotFound", `pods "${name}" not found`);
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.flushHeaders();
    const lines = this.#logs.get(name) ?? [];
    const tail = url.searchParams.get("tailLines");
    const shown = tail === null ? lines : lines.slice(Math.max(0, lines.length - Number(tail)));
    if (shown.length > 0) res.write(`${shown.join("\n")}\n`);
    if (url.searchParams.get("follow") !== "true") {
      res.end();
      return;
    }
    const followers = this.#logFollowers.get(name) ?? new Set();
    followers.add(res);
    this.#logFollowers.set(name, followers);
    res.on("close", () => followers.delete(res));
  }

  // ── controllers ────────────────────────────────────────────────────────────────────────

  *#deploymentsIn(namespace: string): Iterable<Json> {
    for (const [key, object] of this.#objects)
      if (key.startsWith(`deployments/${namespace}/`)) yield object;
  }

  /** The Deployment controller with strategy Recreate. */
  #reconcile(deployment: Json): void {
    const namespace = deployment.metadata.namespace;
    const selector = deployment.spec?.selector?.matchLabels ?? {};
    const template = deployment.spec?.template ?? {};
    const hash = createHash("sha256").update(JSON.stringify(template)).digest("hex").slice(0, 10);
    const replicas = deployment.spec?.replicas ?? 1;
    const pods = [...this.#objects.entries()].filter(
      ([key, pod]) => key.startsWith(`pods/${namespace}/`) && matches(pod, selector),
    );
    const stale = pods.filter(
      ([, pod]) => pod.metadata.labels["pod-template-hash"] !== hash || replicas === 0,
    );
    for (const [key, pod] of stale) {
      if (pod.metadata.deletionTimestamp === undefined) {
        pod.metadata.deletionTimestamp = new Date().toISOString();
        this.#modified("pods", key, pod);
        if (!this.holdTermination) setImmediate(() => this.finishTermination(pod.metadata.name));
      }
    }
    if (stale.length > 0 || replicas === 0) return; // Recreate: new pods only once the old are gone
    for (let i = pods.length; i < replicas; i += 1) this.#createPod(deployment, template, hash);
  }

  #createPod(deployment: Json, template: Json, hash: string): void {
    this.#podSerial += 1;
    const name = `${deployment.metadata.name}-${hash.slice(0, 8)}-${String(this.#podSerial).padStart(5, "0")}`;
    const namespace = deployment.metadata.namespace;
    const pod: Json = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name,
        namespace,
        labels: { ...template.metadata?.labels, "pod-template-hash": hash },
        annotations: { ...template.metadata?.annotations },
        creationTimestamp: new Date(Date.now() + this.#podSerial).toISOString(),
      },
      spec: clone(template.spec ?? {}),
      status: {
        phase: "Pending",
        conditions: [{ type: "PodScheduled", status: "False" }],
        containerStatuses: [],
      },
    };
    const key = `pods/${namespace}/${name}`;
    this.#rv += 1;
    pod.metadata.resourceVersion = String(this.#rv);
    pod.metadata.uid = createHash("sha1").update(name).digest("hex").slice(0, 16);
    this.#objects.set(key, pod);
    this.#record("pods", "ADDED", pod);
    const behaviour = this.behaviour;
    setImmediate(() => this.#kubelet(name, behaviour));
  }

  /** What kubelet (and the scheduler) do with a new pod, by behaviour. */
  #kubelet(name: string, behaviour: PodBehaviour): void {
    const key = `pods/${SIM_NAMESPACE}/${name}`;
    if (!this.#objects.has(key) || behaviour === "manual") return;
    if (behaviour === "unschedulable") {
      const pod = this.#objects.get(key) as Json;
      pod.status.conditions = [
        {
          type: "PodScheduled",
          status: "False",
          reason: "Unschedulable",
          message: "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        },
      ];
      this.#modified("pods", key, pod);
      return;
    }
    const scheduled = { phase: "Pending", conditions: [{ type: "PodScheduled", status: "True" }] };
    const node = { nodeName: "node-a" };
    const pod = this.#objects.get(key) as Json;
    pod.spec = { ...pod.spec, ...node };
    if (behaviour === "image-pull-failure") {
      this.setContainer(
        name,
        {
          restartCount: 0,
          ready: false,
          state: {
            waiting: {
              reason: "ImagePullBackOff",
              message: 'Back-off pulling image "atoll-agent:0.1.0"',
            },
          },
        },
        scheduled,
      );
      return;
    }
    const startedAt = new Date().toISOString();
    this.setContainer(
      name,
      { restartCount: 0, ready: false, started: true, state: { running: { startedAt } } },
      { phase: "Running", conditions: [{ type: "PodScheduled", status: "True" }] },
    );
    this.appendLog(name, `READY ${name}`);
    if (behaviour === "crash") {
      setImmediate(() => this.crash(name, 3));
      return;
    }
    if (behaviour === "exit-0") {
      setImmediate(() =>
        this.setContainer(name, {
          ready: false,
          started: false,
          state: {
            terminated: { exitCode: 0, reason: "Completed", finishedAt: new Date().toISOString() },
          },
        }),
      );
      return;
    }
    setImmediate(() =>
      this.setContainer(
        name,
        { ready: true },
        {
          conditions: [
            { type: "PodScheduled", status: "True" },
            { type: "Ready", status: "True" },
          ],
        },
      ),
    );
  }
}
