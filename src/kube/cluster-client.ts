/**
 * The backend's small view of the Kubernetes API (`ClusterClient`), and its one implementation
 * on `@kubernetes/client-node` 2.x. Everything the backend does to a cluster goes through these
 * calls, so the library (whose API broke at 1.0 and 2.0) stays behind this file.
 *
 * Writes:
 * - `apply`: server-side apply (PATCH `application/apply-patch+yaml`) with field manager
 *   `atoll-deploy` and `force=true`: atoll-deploy owns these objects (they carry
 *   `app.kubernetes.io/managed-by: atoll-deploy`) and the definition is their source of truth,
 *   so a field someone changed by hand is taken back at the next Deploy instead of failing it
 *   with a conflict. https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts
 * - `scale`: the Deployment's scale subresource (merge patch of `spec.replicas`).
 * - `patchDeployment`: a JSON merge patch (RFC 7386), for the restartedAt annotation and the
 *   annotations recording why the server stopped an agent.
 */
import { PassThrough } from "node:stream";
import {
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  Log,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import type { KubeItem, ListWatchSource, WatchEvent } from "./informer.ts";
import { MANAGED_SELECTOR } from "./object-names.ts";
import type { KubeObject } from "./render.ts";

/** The field manager of every write (SPEC §11). */
export const FIELD_MANAGER = "atoll-deploy";

export interface PodLogOptions {
  readonly container: string;
  readonly tailLines: number;
  readonly follow: boolean;
  readonly signal: AbortSignal;
}

/** What the Kubernetes backend needs of a cluster, in one namespace. */
export interface ClusterClient {
  readonly namespace: string;
  /** Server-side apply of one object of the namespace. */
  apply(object: KubeObject): Promise<void>;
  /** Sets the Deployment's replicas through its scale subresource; a missing one is no error. */
  scale(name: string, replicas: number): Promise<void>;
  /** JSON merge patch of a Deployment; a missing one is no error. */
  patchDeployment(name: string, patch: Record<string, unknown>): Promise<void>;
  /** Deployments managed by atoll-deploy. */
  readonly deployments: ListWatchSource;
  /** Pods managed by atoll-deploy. */
  readonly pods: ListWatchSource;
  /** The container's log: chunks of text as they arrive. */
  podLog(pod: string, options: PodLogOptions): AsyncIterable<string>;
}

export interface ClusterClientOptions {
  /** A kubeconfig file; default: `$KUBECONFIG`, `~/.kube/config`, or the in-cluster account. */
  readonly kubeconfig?: string | undefined;
  /** A context of the kubeconfig other than its current one (the live test suite). */
  readonly context?: string | undefined;
  /** Namespace; default: the context's, else "default". */
  readonly namespace?: string | undefined;
}

function statusOf(error: unknown): number | undefined {
  const e = error as { code?: unknown; statusCode?: unknown };
  if (typeof e?.code === "number") return e.code;
  if (typeof e?.statusCode === "number") return e.statusCode;
  return undefined;
}

/** Loads the kubeconfig as `options` say. */
export function loadKubeConfig(options: ClusterClientOptions): KubeConfig {
  const kc = new KubeConfig();
  if (options.kubeconfig !== undefined) kc.loadFromFile(options.kubeconfig);
  else kc.loadFromDefault();
  if (options.context !== undefined) kc.setCurrentContext(options.context);
  return kc;
}

/** A ClusterClient on `kc` (see `loadKubeConfig`). */
export function createClusterClient(
  kc: KubeConfig,
  options: ClusterClientOptions = {},
): ClusterClient {
  const namespace =
    options.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? "default";
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const watcher = new Watch(kc);
  const logs = new Log(kc);
  const apply = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);
  const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
  const ignoreMissing = (error: unknown): void => {
    if (statusOf(error) !== 404) throw error;
  };

  const source = (
    path: string,
    list: () => Promise<{ items: unknown[]; metadata?: { resourceVersion?: string } }>,
  ): ListWatchSource => ({
    async list() {
      const result = await list();
      return {
        items: result.items as KubeItem[],
        resourceVersion: result.metadata?.resourceVersion ?? "",
      };
    },
    watch(resourceVersion, onEvent, signal) {
      return new Promise<void>((resolve, reject) => {
        let controller: AbortController | undefined;
        const onAbort = (): void => controller?.abort();
        signal.addEventListener("abort", onAbort, { once: true });
        const finish = (error: unknown): void => {
          signal.removeEventListener("abort", onAbort);
          const name = (error as { name?: string } | null)?.name;
          // Aborting and the library's inactivity timeout both just end this watch.
          if (
            error === null ||
            error === undefined ||
            signal.aborted ||
            name === "AbortError" ||
            name === "TimeoutError"
          ) {
            resolve();
          } else {
            reject(error);
          }
        };
        watcher
          .watch(
            path,
            { labelSelector: MANAGED_SELECTOR, resourceVersion, allowWatchBookmarks: true },
            (type, object) => onEvent({ type: type as WatchEvent["type"], object }),
            finish,
          )
          .then((c) => {
            controller = c;
            if (signal.aborted) c.abort();
          }, finish);
      });
    },
  });

  return {
    namespace,
    async apply(object) {
      const body = object;
      const common = {
        name: object.metadata.name,
        namespace,
        body,
        fieldManager: FIELD_MANAGER,
        force: true,
      };
      switch (object.kind) {
        case "ConfigMap":
          await core.patchNamespacedConfigMap(common, apply);
          return;
        case "Service":
          await core.patchNamespacedService(common, apply);
          return;
        case "Deployment":
          await apps.patchNamespacedDeployment(common, apply);
          return;
        default:
          throw new Error(`cannot apply a ${object.kind}`);
      }
    },
    async scale(name, replicas) {
      await apps
        .patchNamespacedDeploymentScale(
          { name, namespace, body: { spec: { replicas } }, fieldManager: FIELD_MANAGER },
          merge,
        )
        .catch(ignoreMissing);
    },
    async patchDeployment(name, patch) {
      await apps
        .patchNamespacedDeployment(
          { name, namespace, body: patch, fieldManager: FIELD_MANAGER },
          merge,
        )
        .catch(ignoreMissing);
    },
    deployments: source(`/apis/apps/v1/namespaces/${namespace}/deployments`, () =>
      apps.listNamespacedDeployment({ namespace, labelSelector: MANAGED_SELECTOR }),
    ),
    pods: source(`/api/v1/namespaces/${namespace}/pods`, () =>
      core.listNamespacedPod({ namespace, labelSelector: MANAGED_SELECTOR }),
    ),
    async *podLog(pod, options) {
      const stream = new PassThrough({ encoding: "utf8" });
      // client-node pipes the response body into `stream` without an error listener on the
      // body; aborting a follow errors that body, which would otherwise be an uncaught error.
      stream.on("pipe", (source: NodeJS.ReadableStream) => {
        source.on("error", () => stream.end());
      });
      const controller = await logs.log(namespace, pod, options.container, stream, {
        follow: options.follow,
        tailLines: options.tailLines,
      });
      const onAbort = (): void => {
        controller.abort();
        stream.end();
      };
      options.signal.addEventListener("abort", onAbort, { once: true });
      try {
        for await (const chunk of stream) {
          if (options.signal.aborted) return;
          yield chunk as string;
        }
      } catch (error) {
        // Aborting the request tears the stream down: that is how a follow ends.
        if (!options.signal.aborted) throw error;
      } finally {
        options.signal.removeEventListener("abort", onAbort);
        controller.abort();
      }
    },
  };
}
