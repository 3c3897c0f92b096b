/**
 * The agent's pod as rendered into its Deployment's template (SPEC §11): the container (the
 * command with its placeholders filled for the pod, the environment, the probes, the resources,
 * the mounted definition) and the termination grace. Pure. What the container cannot carry faithfully (a program inside the agent's
 * directory, an environment variable name a kubelet may refuse, durations that are not whole
 * seconds) is refused with the key, never approximated.
 */
import path from "node:path";
import type { AgentDefinition } from "../config/agent-definition.ts";

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
export const DEFINITION_VOLUME = "definition";
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

/**
 * `ms` in whole seconds, at least `min`; a value Kubernetes cannot count (a fraction, below
 * `min`) adds a `key: problem` entry to `problems`.
 */
export function wholeSeconds(
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

export interface PodOptions {
  readonly image: string;
  /** The server's `health_check_interval` for definitions that leave it unset. */
  readonly healthCheckIntervalMs: number;
}

export interface RenderedPod {
  /** The agent's container. */
  readonly container: Readonly<Record<string, unknown>>;
  /** `stop_timeout`: the pod's terminationGracePeriodSeconds. */
  readonly graceSeconds: number;
  /** The container port (`{port}`). */
  readonly port: number;
  /** The definition's file name: its key in the ConfigMap. */
  readonly configFile: string;
}

/** The agent's pod; what it cannot carry is added to `problems` as `key: problem`. */
export function renderPod(
  definition: AgentDefinition,
  options: PodOptions,
  problems: string[],
): RenderedPod {
  const d = definition.deployment;
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
  const probeFields = probes(definition, options.healthCheckIntervalMs, problems);
  const container = {
    name: CONTAINER_NAME,
    image: options.image,
    command,
    workingDir: DEFINITION_MOUNT_DIR,
    env,
    ports: [{ name: PORT_NAME, containerPort: port, protocol: "TCP" }],
    ...containerResources(definition),
    ...probeFields,
    volumeMounts: [{ name: DEFINITION_VOLUME, mountPath: DEFINITION_MOUNT_DIR, readOnly: true }],
  };
  return { container, graceSeconds, port, configFile };
}

/** The startup, liveness and readiness probes of `health_path` (none when it is empty). */
function probes(
  definition: AgentDefinition,
  defaultIntervalMs: number,
  problems: string[],
): Record<string, unknown> {
  const d = definition.deployment;
  if (d.healthPath === "") return {};
  const httpGet = { path: d.healthPath, port: PORT_NAME, scheme: "HTTP" };
  const timeoutSeconds = wholeSeconds(
    d.healthTimeoutMs,
    "deployment.health_timeout",
    problems,
    1,
    "a probe's timeoutSeconds",
  );
  const periodSeconds = wholeSeconds(
    d.healthCheckIntervalMs ?? defaultIntervalMs,
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
  const steady = { httpGet, periodSeconds, timeoutSeconds, failureThreshold: d.failureThreshold };
  return {
    startupProbe: { httpGet, periodSeconds: 1, timeoutSeconds, failureThreshold: startSeconds },
    livenessProbe: steady,
    readinessProbe: steady,
  };
}

/** Memory (limit = request), CPU (limit = request) and GPUs (a limit only) of the definition. */
function containerResources(definition: AgentDefinition): Record<string, unknown> {
  const k = definition.kubernetes;
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
  return Object.keys(limits).length === 0
    ? {}
    : { resources: { limits, ...(Object.keys(requests).length === 0 ? {} : { requests }) } };
}
