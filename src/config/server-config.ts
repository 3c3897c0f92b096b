/**
 * Loads the server configuration (SPEC §3): defaults < the `deployment` object of the config
 * file < `ATOLL_DEPLOY_<KEY>` environment variables < `serve` flags.
 *
 * Every value of every source is checked, even one a later source overrides: a config file
 * holding a wrong type stops the server instead of lying in wait for the day the flag is dropped.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { ConfigError } from "./config-error.ts";
import {
  closestKey,
  describeValue,
  isTable,
  osProblem,
  ownValue,
  secondsToMs,
} from "./config-values.ts";
import { parseJsonObject } from "./definition-syntax.ts";
import { isDns1123Label } from "./kubernetes-syntax.ts";
import {
  isServerConfigKey,
  NON_CONFIG_ENV_VARS,
  SERVER_CONFIG_KEYS,
  type ServerConfigKey,
  serverConfigKeyInfo,
} from "./server-config-keys.ts";
import type { ServerConfig } from "./server-config-types.ts";
import {
  type ConfigValue,
  convertValue,
  failAt,
  HTTP_LISTEN_OFF,
  resolvePath,
  type ValueOrigin,
} from "./server-config-values.ts";
import { SERVER_VALUES } from "./value-schema.ts";

/** Default of `max_package_bytes`: 100 MiB (SPEC §3; the value schema's default). */
export const DEFAULT_MAX_PACKAGE_BYTES = SERVER_VALUES.max_package_bytes.default;

/** Which source supplied a key's effective value (`option`: set in code, see `options`). */
export type ConfigSource = "default" | "file" | "env" | "flag" | "option";

/** Input of `loadServerConfig`; the CLI gathers it, so this module reads no global state. */
export interface ServerConfigInput {
  /**
   * Flag values by config key: strings as typed, booleans for switches (`--no-restart` arrives
   * as `restart_on_failure: false`). Undefined entries are ignored.
   */
  readonly flags: Partial<Record<ServerConfigKey, string | boolean | undefined>>;
  /** The environment (normally `process.env`). An empty `ATOLL_DEPLOY_*` value counts as unset. */
  readonly env: NodeJS.ProcessEnv;
  /** Relative paths (and the default agents directory) resolve against this. */
  readonly cwd: string;
  /** Home directory: the default config file, `~` in paths and the default state directory. */
  readonly homeDir: string;
  /** The `--config` file; when given it must exist. Default `<homeDir>/.ollama_server/.ollama_config.json`, which may be missing. */
  readonly configFile?: string | undefined;
  /**
   * Values set in code by a program embedding the server (`DeploymentServer`), by key, typed as
   * in the file's `deployment` object and checked as strictly. When given, they take the file's
   * place: no config file is read (`configFile` is ignored). `label(key)` names a value in
   * messages.
   */
  readonly options?:
    | {
        readonly values: Readonly<Partial<Record<ServerConfigKey, unknown>>>;
        readonly label: (key: ServerConfigKey) => string;
      }
    | undefined;
}

/** Result of `loadServerConfig`. */
export interface LoadedServerConfig {
  readonly config: ServerConfig;
  /** Non-fatal findings (unknown keys in the file, unknown `ATOLL_DEPLOY_*` variables), one line each; a fresh array the caller owns. */
  readonly warnings: string[];
  /** The source of each key's effective value. */
  readonly sources: Readonly<Record<ServerConfigKey, ConfigSource>>;
  /** Absolute path of the config file that was read; undefined when the default file does not exist. */
  readonly configFile: string | undefined;
}

/** The default config file: ATOLL's shared user config, whose `deployment` object is ours. */
export function defaultConfigFilePath(homeDir: string): string {
  return path.join(homeDir, ".ollama_server", ".ollama_config.json");
}

interface Setting {
  readonly value: ConfigValue | undefined;
  readonly origin: ValueOrigin;
}

/**
 * Builds the effective configuration.
 * @throws ConfigError (one line naming the file and key, the variable or the flag) when the
 *   `--config` file does not exist; when the config file cannot be read, is not valid JSON, is not
 *   an object, has a `deployment` that is not an object, or holds a wrong type or out-of-range
 *   value; when an environment variable or flag cannot be read as its key's type; and when the
 *   combination is inconsistent (max_port below base_port, TLS key without certificate, ...).
 */
export function loadServerConfig(input: ServerConfigInput): LoadedServerConfig {
  const paths = { cwd: input.cwd, homeDir: input.homeDir };
  const warnings: string[] = [];
  const layers: Map<ServerConfigKey, Setting>[] = [];

  const file = input.options === undefined ? readConfigFile(input, warnings) : undefined;
  const fileLayer = new Map<ServerConfigKey, Setting>();
  for (const [key, raw] of Object.entries(input.options?.values ?? {})) {
    if (raw === undefined || !isServerConfigKey(key)) continue;
    const label = input.options?.label(key) ?? key;
    const origin: ValueOrigin = { source: "option", key: label, label };
    fileLayer.set(key, {
      value: convertValue(serverConfigKeyInfo(key), raw, origin, paths),
      origin,
    });
  }
  for (const [key, raw] of Object.entries(file?.deployment ?? {})) {
    if (!isServerConfigKey(key)) continue;
    const origin: ValueOrigin = {
      source: "file",
      file: file?.path ?? "",
      key: `deployment.${key}`,
      label: `${file?.path}: deployment.${key}`,
    };
    fileLayer.set(key, {
      value: convertValue(serverConfigKeyInfo(key), raw, origin, paths),
      origin,
    });
  }
  layers.push(fileLayer);

  const envLayer = new Map<ServerConfigKey, Setting>();
  for (const info of SERVER_CONFIG_KEYS) {
    const raw = input.env[info.env];
    if (raw === undefined || raw === "") continue;
    const origin: ValueOrigin = {
      source: "env",
      key: info.env,
      label: `environment variable ${info.env}`,
    };
    envLayer.set(info.key, { value: convertValue(info, raw, origin, paths), origin });
  }
  warnings.push(...unknownEnvWarnings(input.env));
  layers.push(envLayer);

  const flagLayer = new Map<ServerConfigKey, Setting>();
  for (const [key, raw] of Object.entries(input.flags)) {
    if (raw === undefined || !isServerConfigKey(key)) continue;
    const info = serverConfigKeyInfo(key);
    const flag = info.flag ?? `--${key.replaceAll("_", "-")}`;
    const origin: ValueOrigin = { source: "flag", key: flag, label: flag };
    flagLayer.set(key, { value: convertValue(info, raw, origin, paths), origin });
  }
  layers.push(flagLayer);

  const effective = new Map<ServerConfigKey, Setting>();
  for (const layer of layers) for (const [key, setting] of layer) effective.set(key, setting);
  const config = buildConfig(effective, input);
  const sources = Object.fromEntries(
    SERVER_CONFIG_KEYS.map(({ key }) => [key, effective.get(key)?.origin.source ?? "default"]),
  ) as Record<ServerConfigKey, ConfigSource>;
  return Object.freeze({
    config,
    warnings,
    sources: Object.freeze(sources),
    configFile: file?.path,
  });
}

function buildConfig(
  effective: Map<ServerConfigKey, Setting>,
  input: ServerConfigInput,
): ServerConfig {
  const get = <T extends ConfigValue>(key: ServerConfigKey): T | undefined =>
    effective.get(key)?.value as T | undefined;
  const label = (key: ServerConfigKey) => effective.get(key)?.origin.label ?? "default";

  const S = SERVER_VALUES;
  const basePort = get<number>("base_port") ?? S.base_port.default;
  // The default range is 1000 ports, cut at the top of the port space.
  const maxPort = get<number>("max_port") ?? Math.min(basePort + 999, 65535);
  if (maxPort < basePort) {
    const origin = effective.get("max_port")?.origin;
    if (origin)
      failAt(origin, `${maxPort} is below base_port ${basePort} (from ${label("base_port")})`);
  }
  const tlsCert = get<string>("tls_cert");
  const tlsKey = get<string>("tls_key");
  const tlsClientCa = get<string>("tls_client_ca");
  requireWith(effective, "tls_key", tlsKey, "tls_cert", tlsCert);
  requireWith(effective, "tls_cert", tlsCert, "tls_key", tlsKey);
  requireWith(effective, "tls_client_ca", tlsClientCa, "tls_cert", tlsCert);

  const namespace = get<string>("namespace");
  const namespaceOrigin = effective.get("namespace")?.origin;
  if (namespace !== undefined && namespaceOrigin !== undefined && !isDns1123Label(namespace)) {
    failAt(
      namespaceOrigin,
      `must be a Kubernetes namespace name (1 to 63 lower-case letters, digits or "-", starting and ending with a letter or digit), got ${describeValue(namespace)}`,
    );
  }

  const healthCheckIntervalS =
    get<number>("health_check_interval") ?? S.health_check_interval.default;
  const httpListen = get<string>("http_listen") ?? "127.0.0.1:50052";
  return Object.freeze({
    enabled: get<boolean>("enabled") ?? true,
    host: get<string>("host") ?? "localhost",
    basePort,
    maxPort,
    maxAgents: get<number>("max_agents") ?? S.max_agents.default,
    healthCheckIntervalMs: secondsToMs(healthCheckIntervalS),
    restartOnFailure: get<boolean>("restart_on_failure") ?? true,
    maxRestarts: get<number>("max_restarts") ?? S.max_restarts.default,
    agentsDirectory: get<string>("agents_directory") ?? path.resolve(input.cwd, "atoll_agents"),
    listen: get<string>("listen") ?? "127.0.0.1:50051",
    stateDir: get<string>("state_dir") ?? defaultStateDir(input.env, input.homeDir),
    authTokenFile: get<string>("auth_token_file"),
    tlsCert,
    tlsKey,
    tlsClientCa,
    logLevel: get<ServerConfig["logLevel"]>("log_level") ?? "info",
    logMaxBytes: get<number>("log_max_bytes") ?? S.log_max_bytes.default,
    logKeep: get<number>("log_keep") ?? S.log_keep.default,
    httpListen: httpListen === HTTP_LISTEN_OFF ? undefined : httpListen,
    maxPackageBytes: get<number>("max_package_bytes") ?? DEFAULT_MAX_PACKAGE_BYTES,
    backend: get<ServerConfig["backend"]>("backend") ?? "local",
    kubeconfig: get<string>("kubeconfig"),
    namespace,
  });
}

/** `key` set without `needed`: a ConfigError at `key`'s source. */
function requireWith(
  effective: Map<ServerConfigKey, Setting>,
  key: ServerConfigKey,
  value: string | undefined,
  needed: ServerConfigKey,
  neededValue: string | undefined,
): void {
  const origin = effective.get(key)?.origin;
  if (value !== undefined && neededValue === undefined && origin !== undefined) {
    failAt(origin, `is set but ${needed} is not: TLS needs both tls_cert and tls_key`);
  }
}

/** `$XDG_STATE_HOME/atoll-deploy` when XDG_STATE_HOME is absolute (the XDG spec ignores relative ones), else `<home>/.local/state/atoll-deploy`. */
export function defaultStateDir(env: NodeJS.ProcessEnv, homeDir: string): string {
  const xdg = env.XDG_STATE_HOME;
  if (xdg !== undefined && path.isAbsolute(xdg)) return path.join(xdg, "atoll-deploy");
  return path.join(homeDir, ".local", "state", "atoll-deploy");
}

interface ConfigFile {
  readonly path: string;
  readonly deployment: Record<string, unknown>;
}

function readConfigFile(input: ServerConfigInput, warnings: string[]): ConfigFile | undefined {
  const explicit = input.configFile !== undefined;
  const file = explicit
    ? resolvePath(input.configFile ?? "", { cwd: input.cwd, homeDir: input.homeDir })
    : defaultConfigFilePath(input.homeDir);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      if (!explicit) return undefined;
      throw new ConfigError(`config file ${file} does not exist`, { file }, { cause: error });
    }
    throw new ConfigError(
      `config file ${file} cannot be read: ${osProblem(error)}`,
      { file },
      {
        cause: error,
      },
    );
  }
  const parsed = parseJsonObject(text);
  if (!parsed.ok) throw new ConfigError(`${file}: ${parsed.problem}`, { file });
  const deployment = ownValue(parsed.root, "deployment");
  if (deployment === undefined) return { path: file, deployment: {} };
  if (!isTable(deployment)) {
    throw new ConfigError(
      `${file}: deployment: must be an object, got ${describeValue(deployment)}`,
      { file, key: "deployment" },
    );
  }
  const known = SERVER_CONFIG_KEYS.map(({ key }) => key);
  for (const key of Object.keys(deployment)) {
    if (isServerConfigKey(key)) continue;
    const guess = closestKey(key, known);
    warnings.push(
      `${file}: unknown key deployment.${key} ignored${guess === undefined ? "" : ` (did you mean deployment.${guess}?)`}`,
    );
  }
  return { path: file, deployment };
}

function unknownEnvWarnings(env: NodeJS.ProcessEnv): string[] {
  const known = [...SERVER_CONFIG_KEYS.map((info) => info.env), ...NON_CONFIG_ENV_VARS];
  return Object.keys(env)
    .filter((name) => name.startsWith("ATOLL_DEPLOY_") && !known.includes(name))
    .sort()
    .map((name) => {
      const guess = closestKey(name, known);
      return `unknown environment variable ${name} ignored${guess === undefined ? "" : ` (did you mean ${guess}?)`}`;
    });
}

/**
 * The effective configuration as one value per key, in table order and as the file writes it:
 * durations in seconds, sizes in bytes, unset values as `null`. For structured logs (one field per key).
 * Nothing here is secret: `auth_token_file` and the TLS key are paths; the token and key contents
 * are never read by this module.
 */
export function configFields(
  config: ServerConfig,
): Readonly<Record<ServerConfigKey, string | number | boolean | null>> {
  const values: Record<ServerConfigKey, string | number | boolean | undefined> = {
    enabled: config.enabled,
    host: config.host,
    base_port: config.basePort,
    max_port: config.maxPort,
    max_agents: config.maxAgents,
    health_check_interval: config.healthCheckIntervalMs / 1000,
    restart_on_failure: config.restartOnFailure,
    max_restarts: config.maxRestarts,
    agents_directory: config.agentsDirectory,
    listen: config.listen,
    state_dir: config.stateDir,
    auth_token_file: config.authTokenFile,
    tls_cert: config.tlsCert,
    tls_key: config.tlsKey,
    tls_client_ca: config.tlsClientCa,
    log_level: config.logLevel,
    log_max_bytes: `${config.logMaxBytes} bytes`,
    log_keep: config.logKeep,
    http_listen: config.httpListen ?? HTTP_LISTEN_OFF,
    max_package_bytes: config.maxPackageBytes,
    backend: config.backend,
    kubeconfig: config.kubeconfig,
    namespace: config.namespace,
  };
  return Object.fromEntries(
    SERVER_CONFIG_KEYS.map(({ key }) => [key, values[key] ?? null]),
  ) as Record<ServerConfigKey, string | number | boolean | null>;
}

/**
 * The effective configuration, one `key = value` line per key in table order, with the source
 * of each value when `sources` is given (`base_port = 8100 (default)`). Durations in seconds
 * (`30 s`), sizes in bytes (`104857600 bytes`), unset values as `none`. For people; logs take `configFields`.
 */
export function describeConfig(
  config: ServerConfig,
  sources?: Readonly<Record<ServerConfigKey, ConfigSource>>,
): string {
  const fields = configFields(config);
  return SERVER_CONFIG_KEYS.map(({ key }) => {
    const value = fields[key];
    const unit =
      key === "health_check_interval" ? " s" : key === "max_package_bytes" ? " bytes" : "";
    const shown = value === null ? "none" : `${value}${unit}`;
    const source = sources === undefined ? "" : ` (${sources[key]})`;
    return `${key} = ${shown}${source}`;
  }).join("\n");
}
