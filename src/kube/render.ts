/**
 * Agent definition → Kubernetes objects (SPEC §11): per agent a ConfigMap holding the definition
 * file, a Deployment (one replica, strategy Recreate) and a Service, named `atoll-<name>`.
 * Pure: the definition and its file's text come in, plain objects go out (YAML is
 * `manifest-yaml.ts`'s business). docs/kubernetes.md tells how every key maps.
 *
 * A definition that a cluster cannot run as the local supervisor would is refused with the file
 * and key, never approximated: `auto_restart = false` or `max_restarts = 0` (a Deployment's pod
 * always restarts) here; probe or grace durations that are not whole seconds, environment
 * variable names a kubelet may refuse and a program inside the agent's directory in
 * `render-pod.ts`, which renders the pod.
 */
import { createHash } from "node:crypto";
import type { AgentDefinition } from "../config/agent-definition.ts";
import { agentLabels, DEFINITION_SHA_ANNOTATION, objectName } from "./object-names.ts";
import { DEFINITION_VOLUME, PORT_NAME, renderPod } from "./render-pod.ts";

/** A Kubernetes object as plain data. */
export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
  };
  readonly [field: string]: unknown;
}

/** The agent's three objects. */
export interface AgentObjects {
  readonly agent: string;
  /** `atoll-<name>`: the name of all three. */
  readonly objectName: string;
  readonly namespace: string | undefined;
  readonly configMap: KubeObject;
  readonly deployment: KubeObject;
  readonly service: KubeObject;
  /** The container port (`{port}`). */
  readonly port: number;
}

export interface RenderInput {
  readonly definition: AgentDefinition;
  /** The text of the definition file, shipped as is in the ConfigMap. */
  readonly text: string;
}

export interface RenderOptions {
  /** Namespace when the definition's `[kubernetes].namespace` does not say; none = no namespace field. */
  readonly namespace?: string | undefined;
  /** Image when the definition's `[kubernetes].image` does not say. */
  readonly image?: string | undefined;
  /** The package version: the default image is `atoll-agent:<version>`. */
  readonly version: string;
  /**
   * The server-side defaults of SPEC §3 for keys the definition leaves unset (`auto_restart`,
   * `max_restarts`, `health_check_interval`); `render` uses the built-in ones.
   */
  readonly defaults?: {
    readonly autoRestart: boolean;
    readonly maxRestarts: number;
    readonly healthCheckIntervalMs: number;
  };
}

/** The defaults of SPEC §3. */
export const SERVER_DEFAULTS = Object.freeze({
  autoRestart: true,
  maxRestarts: 3,
  healthCheckIntervalMs: 30_000,
});

export type RenderResult =
  | { readonly ok: true; readonly objects: AgentObjects }
  /** Each problem is one line `<file>: <key>: <problem>`. */
  | { readonly ok: false; readonly problems: readonly string[] };

/** Renders one agent; the result names every refused key. */
export function renderAgent(input: RenderInput, options: RenderOptions): RenderResult {
  const { definition, text } = input;
  const d = definition.deployment;
  const k = definition.kubernetes;
  const defaults = options.defaults ?? SERVER_DEFAULTS;
  const problems: string[] = [];

  const name = objectName(definition.name);
  if (!name.ok) problems.push(`agent.name: ${JSON.stringify(definition.name)} ${name.problem}`);

  const autoRestart = d.autoRestart ?? defaults.autoRestart;
  if (!autoRestart) {
    problems.push(
      `deployment.auto_restart: ${d.autoRestart === undefined ? "false by the server default restart_on_failure" : "false"} cannot be run faithfully: a Deployment always restarts an agent that exits or fails (restartPolicy Always); remove the key or set it to true`,
    );
  }
  const maxRestarts = d.maxRestarts ?? defaults.maxRestarts;
  if (maxRestarts === 0) {
    problems.push(
      "deployment.max_restarts: 0 (never restart) cannot be run faithfully: kubelet restarts a Deployment's container before any server can stop it; allow at least 1",
    );
  }

  const pod = renderPod(
    definition,
    {
      image: k.image ?? options.image ?? `atoll-agent:${options.version}`,
      healthCheckIntervalMs: defaults.healthCheckIntervalMs,
    },
    problems,
  );

  if (!name.ok || problems.length > 0) {
    return {
      ok: false,
      problems: problems.map((problem) => `${definition.configPath}: ${problem}`),
    };
  }

  const namespace = k.namespace ?? options.namespace;
  const labels = agentLabels(definition.name);
  const metadata = (extra: Record<string, unknown> = {}) => ({
    name: name.name,
    ...(namespace === undefined ? {} : { namespace }),
    labels: { ...labels },
    ...extra,
  });

  const { port, configFile } = pod;
  const configMap: KubeObject = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: metadata(),
    data: { [configFile]: text },
  };
  const deployment: KubeObject = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: metadata(),
    spec: {
      replicas: 1,
      strategy: { type: "Recreate" },
      selector: { matchLabels: { ...labels } },
      template: {
        metadata: {
          labels: { ...labels },
          annotations: {
            [DEFINITION_SHA_ANNOTATION]: createHash("sha256").update(text, "utf8").digest("hex"),
          },
        },
        spec: {
          restartPolicy: "Always",
          terminationGracePeriodSeconds: pod.graceSeconds,
          // The agent needs no API access and no Service variables (the local agent gets none).
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(Object.keys(k.nodeSelector).length === 0
            ? {}
            : { nodeSelector: { ...k.nodeSelector } }),
          containers: [pod.container],
          volumes: [{ name: DEFINITION_VOLUME, configMap: { name: name.name } }],
        },
      },
    },
  };
  const service: KubeObject = {
    apiVersion: "v1",
    kind: "Service",
    metadata: metadata(),
    spec: {
      selector: { ...labels },
      ports: [{ name: PORT_NAME, port, targetPort: PORT_NAME, protocol: "TCP" }],
    },
  };
  return {
    ok: true,
    objects: Object.freeze({
      agent: definition.name,
      objectName: name.name,
      namespace,
      configMap,
      deployment,
      service,
      port,
    }),
  };
}

export type RenderManyResult =
  | { readonly ok: true; readonly agents: readonly AgentObjects[] }
  | { readonly ok: false; readonly problems: readonly string[] };

/**
 * Renders several agents; refuses the lot when any is refused or when two map to the same
 * object name in the same namespace (naming both files).
 */
export function renderAgents(
  inputs: readonly RenderInput[],
  options: RenderOptions,
): RenderManyResult {
  const problems: string[] = [];
  const agents: AgentObjects[] = [];
  for (const input of inputs) {
    const result = renderAgent(input, options);
    if (result.ok) agents.push(result.objects);
    else problems.push(...result.problems);
  }
  const byName = new Map<string, AgentObjects[]>();
  for (const agent of agents) {
    const key = `${agent.namespace ?? ""}/${agent.objectName}`;
    byName.set(key, [...(byName.get(key) ?? []), agent]);
  }
  for (const same of byName.values()) {
    if (same.length < 2) continue;
    for (const agent of same) {
      const others = same.filter((o) => o !== agent).map((o) => JSON.stringify(o.agent));
      const input = inputs.find((i) => i.definition.name === agent.agent);
      problems.push(
        `${input?.definition.configPath ?? agent.agent}: agent.name: ${JSON.stringify(agent.agent)} maps to the object name ${agent.objectName}, as ${others.join(", ")} does: rename one of them`,
      );
    }
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, agents };
}

/** The objects of `agent` in apply order: the ConfigMap before the Deployment that mounts it. */
export function objectsOf(agent: AgentObjects): readonly KubeObject[] {
  return [agent.configMap, agent.deployment, agent.service];
}
