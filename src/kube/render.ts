/**
 * Agent definition → Kubernetes objects (SPEC §11): per agent a ConfigMap holding the definition
 * file, a Deployment (one replica, strategy Recreate) and a Service, named `atoll-<name>`.
 * Pure: the definition and its file's text come in, plain objects go out (YAML is
 * `manifest-yaml.ts`'s business). docs/kubernetes.md tells how every key maps.
 *
 * A definition that a cluster cannot run as the local supervisor would is refused with the file
 * and key, never approximated: `auto_restart = false` or `max_restarts = 0` (a Deployment's pod
 * always restarts), probe or grace durations that are not whole seconds (the API counts whole
 * seconds), environment variable names a kubelet may refuse, a program inside the agent's
 * directory (only the definition is shipped).
 */
import { createHash } from "node:crypto";
import path from "node:path";
import type { AgentDefinition } from "../config/agent-definition.ts";
import { agentLabels, DEFINITION_SHA_ANNOTATION, objectName } from "./object-names.ts";

/** `{port}` when the definition leases one (`port = 0`): the agent's port inside its pod. */
export const DEFAULT_CONTAINER_PORT = 8100;
/** Where the ConfigMap holding the definition is mounted (`{dir}`; also the working directory). */
export const DEFINITION_MOUNT_DIR = "/etc/atoll/agent";
/** The address the agent binds inside its pod (`{host}`, `ATOLL_AGENT_HOST`). */
export const POD_HOST = "0.0.0.0";
/** Name of the agent's container, and of its port. */
export const CONTAINER_NAME = "agent";
export const PORT_NAME = "http";
/** The volume of the definition. */
const DEFINITION_VOLUME = "definition";
/** Variables the supervisor always sets (SPEC §2), over the definition's own. */
const SERVER_SET_ENV = new Set([
  "PORT",
  "ATOLL_AGENT_NAME",
  "ATOLL_AGENT_PORT",
  "ATOLL_AGENT_HOST",
  "ATOLL_AGENT_CONFIG",
]);
/**
 * Environment variable names every supported Kubernetes version takes (before 1.32's relaxed
 * validation, names had to be C identifiers with `-` and `.`):
 * https://kubernetes.io/docs/tasks/inject-data-application/define-environment-variable-container/
 */
const PORTABLE_ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

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

/** The memory quantity of `bytes` in the exact unit giving the smallest number (`512Mi`, `512M`). */
export function memoryQuantity(bytes: number): string {
  const units: [string, number][] = [
    ["Ti", 2 ** 40],
    ["Gi", 2 ** 30],
    ["Mi", 2 ** 20],
    ["Ki", 2 ** 10],
    ["T", 1e12],
    ["G", 1e9],
    ["M", 1e6],
    ["k", 1e3],
  ];
  let best = String(bytes);
  let bestValue = bytes;
  for (const [unit, size] of units) {
    if (bytes % size === 0 && bytes / size < bestValue) {
      bestValue = bytes / size;
      best = `${bestValue}${unit}`;
    }
  }
  return best;
}

/**
 * Kubelet expands `$(VAR)` in `command`, `args` and `env` values, and reduces `$$` to `$`;
 * doubling every `$` keeps a value exactly as the definition wrote it:
 * https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/
 */
export function escapeDollars(value: string): string {
  return value.replaceAll("$", "$$$$");
}

/** Checks and converts the definition; `problems` collects `key: problem` entries. */
function wholeSeconds(
  ms: number,
  key: string,
  problems: string[],
  min: number,
  meaning: string,
): number {
  if (ms % 1000 !== 0 || ms / 1000 < min) {
    problems.push(
      `${key}: ${ms / 1000} s cannot be ${meaning}, which Kubernetes counts in whole seconds${min > 0 ? ` (at least ${min})` : ""}`,
    );
  }
  return Math.max(min, Math.round(ms / 1000));
}

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

  const program = d.command[0] ?? "";
  if (program.startsWith("{dir}") || (!path.isAbsolute(program) && program.includes("/"))) {
    problems.push(
      `deployment.command[0]: ${JSON.stringify(program)} is a program inside the agent's directory, but only the definition file is shipped to the cluster; build the program into the image and name it by absolute path or by name on PATH`,
    );
  }

  const configFile = path.basename(definition.configPath);
  const configPath = `${DEFINITION_MOUNT_DIR}/${configFile}`;
  const port = d.port === 0 ? DEFAULT_CONTAINER_PORT : d.port;
  const placeholders: Record<string, string> = {
    port: String(port),
    host: POD_HOST,
    config: configPath,
    name: definition.name,
    dir: DEFINITION_MOUNT_DIR,
  };
  // `atoll-agent` binds 127.0.0.1 unless told otherwise (SPEC §8), which nothing outside the
  // pod can reach (not even kubelet's probes): the runtime is told the pod's address.
  const argv =
    program === "atoll-agent" &&
    !d.command.some((arg) => arg === "--host" || arg.startsWith("--host="))
      ? [...d.command, "--host", "{host}"]
      : d.command;
  // Unknown placeholders stay as they are, as the local supervisor passes them.
  const command = argv.map((arg) =>
    escapeDollars(
      arg.replace(/\{(port|host|config|name|dir)\}/g, (_, key: string) => placeholders[key] ?? ""),
    ),
  );

  const env: { name: string; value: string }[] = [];
  for (const [key, value] of Object.entries(d.env)) {
    if (SERVER_SET_ENV.has(key)) continue; // the server's own value wins, as locally
    if (!PORTABLE_ENV_NAME.test(key)) {
      problems.push(
        `deployment.env.${key}: ${JSON.stringify(key)} is not an environment variable name every Kubernetes version accepts (letters, digits, "_", "-" and ".", not starting with a digit)`,
      );
      continue;
    }
    env.push({ name: key, value: escapeDollars(value) });
  }
  env.push(
    { name: "PORT", value: String(port) },
    { name: "ATOLL_AGENT_NAME", value: escapeDollars(definition.name) },
    { name: "ATOLL_AGENT_PORT", value: String(port) },
    { name: "ATOLL_AGENT_HOST", value: POD_HOST },
    { name: "ATOLL_AGENT_CONFIG", value: configPath },
  );

  const graceSeconds = wholeSeconds(
    d.stopTimeoutMs,
    "deployment.stop_timeout",
    problems,
    0,
    "terminationGracePeriodSeconds",
  );

  const probes: Record<string, unknown> = {};
  if (d.healthPath !== "") {
    const httpGet = { path: d.healthPath, port: PORT_NAME, scheme: "HTTP" };
    const timeoutSeconds = wholeSeconds(
      d.healthTimeoutMs,
      "deployment.health_timeout",
      problems,
      1,
      "a probe's timeoutSeconds",
    );
    const periodSeconds = wholeSeconds(
      d.healthCheckIntervalMs ?? defaults.healthCheckIntervalMs,
      d.healthCheckIntervalMs === undefined
        ? "health_check_interval (server default)"
        : "deployment.health_check_interval",
      problems,
      1,
      "a probe's periodSeconds",
    );
    const startSeconds = wholeSeconds(
      d.startTimeoutMs,
      "deployment.start_timeout",
      problems,
      1,
      "the startup probe's failureThreshold at one probe a second",
    );
    probes.startupProbe = {
      httpGet,
      periodSeconds: 1,
      timeoutSeconds,
      failureThreshold: startSeconds,
    };
    const steady = {
      httpGet,
      periodSeconds,
      timeoutSeconds,
      failureThreshold: d.failureThreshold,
    };
    probes.livenessProbe = steady;
    probes.readinessProbe = steady;
  }

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

  const limits: Record<string, string> = {};
  const requests: Record<string, string> = {};
  const memory = definition.resources.memoryLimitBytes;
  if (memory !== undefined) {
    limits.memory = memoryQuantity(memory);
    requests.memory = memoryQuantity(memory);
  }
  if (k.cpu !== undefined) {
    limits.cpu = k.cpu;
    requests.cpu = k.cpu;
  }
  // Extended resources take a limit only; the request defaults to it.
  if (k.gpus > 0) limits["nvidia.com/gpu"] = String(k.gpus);
  const resources =
    Object.keys(limits).length === 0
      ? {}
      : { resources: { limits, ...(Object.keys(requests).length === 0 ? {} : { requests }) } };

  const container = {
    name: CONTAINER_NAME,
    image: k.image ?? options.image ?? `atoll-agent:${options.version}`,
    command,
    workingDir: DEFINITION_MOUNT_DIR,
    env,
    ports: [{ name: PORT_NAME, containerPort: port, protocol: "TCP" }],
    ...resources,
    ...probes,
    volumeMounts: [{ name: DEFINITION_VOLUME, mountPath: DEFINITION_MOUNT_DIR, readOnly: true }],
  };

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
          terminationGracePeriodSeconds: graceSeconds,
          // The agent needs no API access and no Service variables (the local agent gets none).
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(Object.keys(k.nodeSelector).length === 0
            ? {}
            : { nodeSelector: { ...k.nodeSelector } }),
          containers: [container],
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
