/**
 * Validates one agent definition (SPEC §2) into a frozen `AgentDefinition`, or reports why it is
 * unusable in one line naming the file, the key path and the problem.
 *
 * Dialects:
 * - TOML: sections `[agent]`, `[deployment]` (with `[deployment.env]`), `[resources]`,
 *   `[kubernetes]` (with `[kubernetes.node_selector]`; read by `render` and the Kubernetes backend).
 * - JSON, nested: `{"agent": {...}, "deployment": {...}, "resources": {...}}`, same keys as TOML.
 * - JSON, flat (legacy): no `agent` object; `name`, `version`, `description` and `capabilities`
 *   at the top level. `deployment` and `resources` are nested objects in both JSON dialects.
 *   The dialect is chosen by whether `agent` is an object, as the `atoll-agent` runtime does, so
 *   both always agree on the name.
 *
 * Every other top-level section (`[llm]`, `[dependencies]`, `[mcp_servers.*]`, `[sub_agents.*]`,
 * ...) belongs to the agent program and is accepted without a look.
 */
import path from "node:path";
import { AGENT_NAME_PATTERN, isValidAgentName } from "../core/agent-name.ts";
import {
  type AgentDefinition,
  DEFAULT_COMMAND,
  type DeploymentSettings,
  type KubernetesSettings,
  type ResourceSettings,
} from "./agent-definition.ts";
import { describeValue, escapeControlChars, ownValue, type Table } from "./config-values.ts";
import { FieldReader, type Problem } from "./definition-fields.ts";
import { parseDefinitionText, syntaxOf } from "./definition-syntax.ts";
import {
  isDns1123Label,
  isImageReference,
  labelKeyProblem,
  labelValueProblem,
  parseCpuQuantity,
} from "./kubernetes-syntax.ts";
import { parseMemorySize } from "./memory-size.ts";
import { DEFINITION_VALUES, defaultInCodeUnit, type ValueSpec } from "./value-schema.ts";

/** Result of `parseAgentDefinition`. */
export type ParseDefinitionResult =
  | { readonly ok: true; readonly definition: AgentDefinition }
  | {
      readonly ok: false;
      /** The declared name when it could be read and is valid, else the directory name (control characters escaped). */
      readonly name: string;
      /** `<file>: <key path>: <problem>`, further problems appended as `; <key path>: <problem>`. */
      readonly message: string;
      readonly warnings: readonly string[];
    };

const V = DEFINITION_VALUES;

/** `restart_delay` for the row `deployment.restart_delay`, and so on. */
type DeploymentValueKey = {
  [P in keyof typeof V]: P extends `deployment.${infer K}` ? K : never;
}[keyof typeof V];

function schemaDefault(spec: ValueSpec): number {
  const value = defaultInCodeUnit(spec);
  // Only rows whose default comes from the server configuration have none.
  if (value === undefined) throw new Error("a definition default is missing from the schema");
  return value;
}

/** Defaults of SPEC §2 that do not come from the server configuration (from the value schema). */
export const DEFINITION_DEFAULTS = Object.freeze({
  port: schemaDefault(V["deployment.port"]),
  autostart: false,
  restartDelayMs: schemaDefault(V["deployment.restart_delay"]),
  stableAfterMs: schemaDefault(V["deployment.stable_after"]),
  healthPath: "/status",
  healthTimeoutMs: schemaDefault(V["deployment.health_timeout"]),
  failureThreshold: schemaDefault(V["deployment.failure_threshold"]),
  startTimeoutMs: schemaDefault(V["deployment.start_timeout"]),
  stopTimeoutMs: schemaDefault(V["deployment.stop_timeout"]),
});

const AGENT_KEYS = ["name", "version", "description", "capabilities"] as const;
const DEPLOYMENT_KEYS = [
  "command",
  "env",
  "port",
  "autostart",
  "auto_restart",
  "max_restarts",
  "restart_delay",
  "stable_after",
  "health_path",
  "health_check_interval",
  "health_timeout",
  "failure_threshold",
  "start_timeout",
  "stop_timeout",
  "log_max_bytes",
  "log_keep",
] as const;
const RESOURCE_KEYS = ["memory_limit", "health_check_interval"] as const;
const KUBERNETES_KEYS = ["image", "namespace", "cpu", "gpus", "node_selector"] as const;

/** Placeholders filled in `[deployment].command` by the supervisor. */
const PLACEHOLDERS: readonly string[] = ["port", "host", "config", "name", "dir"];
/** Variables the supervisor sets itself, over any value from `[deployment].env`. */
const SERVER_SET_ENV: readonly string[] = [
  "PORT",
  "ATOLL_AGENT_NAME",
  "ATOLL_AGENT_PORT",
  "ATOLL_AGENT_HOST",
  "ATOLL_AGENT_CONFIG",
];

const NAME_RULE = `must match ${AGENT_NAME_PATTERN.source} (1 to 63 letters, digits, "_", "." or "-", starting with a letter or digit)`;

/**
 * Parses and validates the definition `text` read from `filePath`.
 *
 * @param filePath the file the text came from; resolved to an absolute path, named in messages,
 *   and deciding the syntax (`.json` → JSON, anything else → TOML).
 * @param dirName name of the agent's directory: the agent's name when the file gives none (an
 *   empty name counts as none).
 * @returns the frozen definition (durations in milliseconds, defaults filled in except those that
 *   come from the server configuration, which stay undefined), or a failure. Never throws.
 */
export function parseAgentDefinition(
  filePath: string,
  text: string,
  dirName: string,
): ParseDefinitionResult {
  const configPath = path.resolve(filePath);
  const syntax = syntaxOf(configPath);
  const parsed = parseDefinitionText(text, syntax);
  if (!parsed.ok) {
    return failure(fallbackName(dirName), configPath, [{ key: "", problem: parsed.problem }], []);
  }
  const root = parsed.root;
  const fields = new FieldReader(syntax);

  // Identity: the [agent] table, or the top level in the flat legacy JSON dialect.
  const agentValue = ownValue(root, "agent");
  const flat = syntax === "json" && agentValue === undefined;
  const identity = flat ? root : fields.section(root, "agent");
  const prefix = flat ? "" : "agent.";
  if (!flat) {
    fields.warnUnknownKeys(identity, "agent.", AGENT_KEYS);
    for (const key of AGENT_KEYS) {
      if (Object.hasOwn(root, key)) {
        fields.warn(`top-level key ${key} is ignored: identity belongs in the agent section`);
      }
    }
  }

  const name = readName(fields, identity, `${prefix}name`, dirName);
  const version = fields.string(identity, "version", `${prefix}version`) ?? "";
  const description = fields.string(identity, "description", `${prefix}description`) ?? "";
  const capabilities =
    fields.stringList(identity, "capabilities", `${prefix}capabilities`) ??
    Object.freeze<string[]>([]);

  const deploymentTable = fields.section(root, "deployment");
  const resourcesTable = fields.section(root, "resources");
  fields.warnUnknownKeys(deploymentTable, "deployment.", DEPLOYMENT_KEYS);
  fields.warnUnknownKeys(resourcesTable, "resources.", RESOURCE_KEYS);
  const deployment = readDeployment(fields, deploymentTable, resourcesTable);
  const resources = readResources(fields, resourcesTable);
  const kubernetesTable = fields.section(root, "kubernetes");
  fields.warnUnknownKeys(kubernetesTable, "kubernetes.", KUBERNETES_KEYS);
  const kubernetes = readKubernetes(fields, kubernetesTable);

  if (fields.problems.length > 0 || name === undefined) {
    return failure(name ?? fallbackName(dirName), configPath, fields.problems, fields.warnings);
  }
  const definition: AgentDefinition = Object.freeze({
    name,
    version,
    description,
    capabilities,
    configPath,
    dir: path.dirname(configPath),
    deployment,
    resources,
    kubernetes,
    warnings: Object.freeze([...fields.warnings]),
  });
  return Object.freeze({ ok: true, definition });
}

function readName(
  fields: FieldReader,
  identity: Table,
  keyPath: string,
  dirName: string,
): string | undefined {
  const declared = fields.string(identity, "name", keyPath);
  if (declared === undefined && ownValue(identity, "name") !== undefined) return undefined;
  if (declared !== undefined && declared !== "") {
    if (isValidAgentName(declared)) return declared;
    return fields.fail(keyPath, `invalid agent name ${describeValue(declared)}: ${NAME_RULE}`);
  }
  if (isValidAgentName(dirName)) return dirName;
  return fields.fail(
    keyPath,
    `not set, and the directory name ${describeValue(dirName)} is not a valid agent name: it ${NAME_RULE}; set ${keyPath}`,
  );
}

function readDeployment(fields: FieldReader, table: Table, resources: Table): DeploymentSettings {
  const command = fields.stringList(table, "command", "deployment.command", true);
  if (command !== undefined) checkCommand(fields, command);
  const env = fields.stringTable(table, "env", "deployment.env");
  for (const key of Object.keys(env ?? {})) {
    if (SERVER_SET_ENV.includes(key)) {
      fields.warn(`deployment.env.${key} is ignored: the server always sets ${key}`);
    }
  }
  const port = fields.value(table, "port", "deployment.port", V["deployment.port"]);
  const healthPath = fields.string(table, "health_path", "deployment.health_path");
  if (healthPath !== undefined && healthPath !== "" && !/^\/[\x21-\x7e]*$/.test(healthPath)) {
    fields.fail(
      "deployment.health_path",
      `must be "" (no HTTP probe) or a path starting with "/" without spaces or control characters, got ${describeValue(healthPath)}`,
    );
  }

  // Older definitions put health_check_interval under [resources]; [deployment] wins.
  const intervalHere = fields.value(
    table,
    "health_check_interval",
    "deployment.health_check_interval",
    V["deployment.health_check_interval"],
  );
  const intervalOld = fields.value(
    resources,
    "health_check_interval",
    "resources.health_check_interval",
    V["resources.health_check_interval"],
  );
  if (intervalHere !== undefined && intervalOld !== undefined && intervalHere !== intervalOld) {
    fields.warn(
      "resources.health_check_interval is ignored: deployment.health_check_interval is set",
    );
  }

  const d = DEFINITION_DEFAULTS;
  /** A numeric `[deployment]` key, checked against its schema row. */
  const value = (key: DeploymentValueKey): number | undefined =>
    fields.value(table, key, `deployment.${key}`, V[`deployment.${key}`]);
  return Object.freeze({
    command: command ?? DEFAULT_COMMAND,
    env: env ?? Object.freeze({}),
    port: port ?? d.port,
    autostart: fields.boolean(table, "autostart", "deployment.autostart") ?? d.autostart,
    autoRestart: fields.boolean(table, "auto_restart", "deployment.auto_restart"),
    maxRestarts: value("max_restarts"),
    restartDelayMs: value("restart_delay") ?? d.restartDelayMs,
    stableAfterMs: value("stable_after") ?? d.stableAfterMs,
    healthPath: healthPath ?? d.healthPath,
    healthCheckIntervalMs: intervalHere ?? intervalOld,
    healthTimeoutMs: value("health_timeout") ?? d.healthTimeoutMs,
    failureThreshold: value("failure_threshold") ?? d.failureThreshold,
    startTimeoutMs: value("start_timeout") ?? d.startTimeoutMs,
    stopTimeoutMs: value("stop_timeout") ?? d.stopTimeoutMs,
    logMaxBytes: value("log_max_bytes"),
    logKeep: value("log_keep"),
  });
}

function checkCommand(fields: FieldReader, command: readonly string[]): void {
  if (command[0] === "") fields.fail("deployment.command[0]", "the program must not be empty");
  command.forEach((arg, index) => {
    for (const match of arg.matchAll(/\{([A-Za-z_]+)\}/g)) {
      const placeholder = match[1] ?? "";
      if (!PLACEHOLDERS.includes(placeholder)) {
        fields.warn(
          `deployment.command[${index}]: unknown placeholder {${placeholder}} is passed as is (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(" ")})`,
        );
      }
    }
  });
}

function readResources(fields: FieldReader, table: Table): ResourceSettings {
  const value = ownValue(table, "memory_limit");
  let memoryLimitBytes: number | undefined;
  if (typeof value === "string") {
    try {
      memoryLimitBytes = parseMemorySize(value);
    } catch (error) {
      fields.fail("resources.memory_limit", (error as Error).message);
    }
  } else if (value !== undefined) {
    fields.fail(
      "resources.memory_limit",
      `Invalid memory format ${describeValue(value)}: expected a string with a unit, such as "512MB"`,
    );
  }
  return Object.freeze({ memoryLimitBytes });
}

function readKubernetes(fields: FieldReader, table: Table): KubernetesSettings {
  const image = fields.string(table, "image", "kubernetes.image");
  if (image !== undefined && !isImageReference(image)) {
    fields.fail(
      "kubernetes.image",
      `must be a container image reference such as "registry.example/atoll-agent:0.1.0", got ${describeValue(image)}`,
    );
  }
  const namespace = fields.string(table, "namespace", "kubernetes.namespace");
  if (namespace !== undefined && !isDns1123Label(namespace)) {
    fields.fail(
      "kubernetes.namespace",
      `must be a Kubernetes namespace name (1 to 63 lower-case letters, digits or "-", starting and ending with a letter or digit), got ${describeValue(namespace)}`,
    );
  }
  let cpu: string | undefined;
  const cpuValue = ownValue(table, "cpu");
  if (typeof cpuValue === "string" || typeof cpuValue === "number") {
    const parsed = parseCpuQuantity(cpuValue);
    if (parsed.ok) cpu = parsed.text;
    else fields.fail("kubernetes.cpu", `${parsed.problem}, got ${describeValue(cpuValue)}`);
  } else if (cpuValue !== undefined) {
    fields.fail(
      "kubernetes.cpu",
      `must be a number of cores or a string such as "500m", got ${describeValue(cpuValue)}`,
    );
  }
  const gpus =
    fields.value(table, "gpus", "kubernetes.gpus", V["kubernetes.gpus"]) ??
    schemaDefault(V["kubernetes.gpus"]);
  const selector = fields.stringTable(table, "node_selector", "kubernetes.node_selector") ?? {};
  for (const [key, value] of Object.entries(selector)) {
    const keyProblem = labelKeyProblem(key);
    const valueProblem = labelValueProblem(value);
    if (keyProblem !== undefined) {
      fields.fail(`kubernetes.node_selector.${key}`, `${keyProblem}, got ${describeValue(key)}`);
    } else if (valueProblem !== undefined) {
      fields.fail(
        `kubernetes.node_selector.${key}`,
        `${valueProblem}, got ${describeValue(value)}`,
      );
    }
  }
  return Object.freeze({
    image,
    namespace,
    cpu,
    gpus,
    nodeSelector: Object.freeze({ ...selector }),
  });
}

function fallbackName(dirName: string): string {
  return escapeControlChars(dirName);
}

function failure(
  name: string,
  configPath: string,
  problems: readonly Problem[],
  warnings: readonly string[],
): ParseDefinitionResult {
  const parts = problems.map(({ key, problem }) => (key === "" ? problem : `${key}: ${problem}`));
  const message = escapeControlChars(`${configPath}: ${parts.join("; ")}`);
  return Object.freeze({
    ok: false,
    name,
    message,
    warnings: Object.freeze([...warnings]),
  });
}
