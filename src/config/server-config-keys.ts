/**
 * The keys of the server configuration (SPEC §3), with their flags and environment variables:
 * the one table the loader, `describeConfig` and the CLI's flag parser are all built from.
 */

/** A key of the server configuration, as written in the config file (snake case). */
export type ServerConfigKey =
  | "enabled"
  | "host"
  | "base_port"
  | "max_port"
  | "max_agents"
  | "health_check_interval"
  | "restart_on_failure"
  | "max_restarts"
  | "agents_directory"
  | "listen"
  | "state_dir"
  | "auth_token_file"
  | "tls_cert"
  | "tls_key"
  | "tls_client_ca"
  | "log_level"
  | "log_max_bytes"
  | "log_keep"
  | "http_listen"
  | "max_package_bytes"
  | "backend"
  | "kubeconfig"
  | "namespace";

/**
 * How a value is written: `integer` and `number` in decimal (`number` may have a fraction),
 * `boolean` as a JSON boolean in the file and `true/false/1/0/yes/no/on/off` in the environment,
 * `path` as a string resolved against the working directory (a leading `~` is the home directory),
 * `size` as a whole number of bytes or a string with a unit (`"100MiB"`, `"1.5GB"`; the units of
 * `[resources].memory_limit`).
 */
export type ServerConfigValueType = "string" | "integer" | "number" | "boolean" | "path" | "size";

/** One row of the key table. */
export interface ServerConfigKeyInfo {
  readonly key: ServerConfigKey;
  /**
   * The `serve` flag, e.g. `--base-port`; undefined when the key has no flag (`enabled`).
   * A flag with a `switchValue` takes no argument.
   */
  readonly flag: string | undefined;
  /** For switches: the value the flag sets (`--no-restart` sets `restart_on_failure` to false). */
  readonly switchValue: boolean | undefined;
  /** The environment variable, `ATOLL_DEPLOY_<KEY>`. */
  readonly env: string;
  readonly type: ServerConfigValueType;
  /** Allowed values (case-insensitive), when the key is an enumeration. */
  readonly choices: readonly string[] | undefined;
  /** The default, as shown in help. */
  readonly defaultText: string;
  /** One line for `--help`. */
  readonly description: string;
}

/** Log levels, most verbose first. */
export const LOG_LEVELS = Object.freeze(["debug", "info", "warn", "error"] as const);

/** Where agents run (SPEC §3, §11). */
export const BACKENDS = Object.freeze(["local", "kubernetes"] as const);

/** Environment variables with the `ATOLL_DEPLOY_` prefix that are not server config keys. */
export const NON_CONFIG_ENV_VARS: readonly string[] = Object.freeze([
  // The client CLI's server address (SPEC §7) and context (SPEC §11).
  "ATOLL_DEPLOY_SERVER",
  "ATOLL_DEPLOY_CONTEXT",
]);

function row(
  key: ServerConfigKey,
  flag: string | undefined,
  type: ServerConfigValueType,
  defaultText: string,
  description: string,
  extra: { switchValue?: boolean; choices?: readonly string[] } = {},
): ServerConfigKeyInfo {
  return Object.freeze({
    key,
    flag,
    switchValue: extra.switchValue,
    env: `ATOLL_DEPLOY_${key.toUpperCase()}`,
    type,
    choices: extra.choices,
    defaultText,
    description,
  });
}

/** Every server configuration key, in the order of SPEC §3. */
export const SERVER_CONFIG_KEYS: readonly ServerConfigKeyInfo[] = Object.freeze([
  row(
    "enabled",
    undefined,
    "boolean",
    "true",
    "false: serve says the server is disabled and exits 0",
  ),
  row("host", "--host", "string", "localhost", "address agents bind and are probed on ({host})"),
  row("base_port", "--base-port", "integer", "8100", "first agent port"),
  row("max_port", "--max-port", "integer", "base_port + 999", "last agent port"),
  row("max_agents", "--max-agents", "integer", "10", "most agents live at once"),
  row(
    "health_check_interval",
    "--health-check-interval",
    "number",
    "30",
    "default liveness probe period, in seconds",
  ),
  row(
    "restart_on_failure",
    "--no-restart",
    "boolean",
    "true",
    "default for auto_restart (--no-restart: do not restart failed agents by default)",
    { switchValue: false },
  ),
  row("max_restarts", "--max-restarts", "integer", "3", "default restart budget of an agent"),
  row("agents_directory", "--agents-dir", "path", "./atoll_agents", "discovery root"),
  row(
    "listen",
    "--listen",
    "string",
    "127.0.0.1:50051",
    "gRPC address, host:port or unix:/path (socket mode 0600)",
  ),
  row(
    "state_dir",
    "--state-dir",
    "path",
    "$XDG_STATE_HOME/atoll-deploy or ~/.local/state/atoll-deploy",
    "state file and agent logs",
  ),
  row(
    "auth_token_file",
    "--auth-token-file",
    "path",
    "none",
    "file holding the bearer token every RPC but health must carry",
  ),
  row("tls_cert", "--tls-cert", "path", "none", "TLS certificate chain (PEM)"),
  row("tls_key", "--tls-key", "path", "none", "TLS private key (PEM)"),
  row("tls_client_ca", "--tls-client-ca", "path", "none", "CA for client certificates: mutual TLS"),
  row("log_level", "--log-level", "string", "info", "daemon log level", { choices: LOG_LEVELS }),
  row(
    "log_max_bytes",
    "--log-max-bytes",
    "size",
    "10 MiB",
    "default size at which an agent's log is rotated (bytes, or with a unit: 10MiB)",
  ),
  row(
    "log_keep",
    "--log-keep",
    "integer",
    "3",
    "default number of rotated log files kept (0-1000)",
  ),
  row(
    "http_listen",
    "--http-listen",
    "string",
    "127.0.0.1:50052",
    "HTTP address of the dashboard, /metrics and the Connect/gRPC-Web API, host:port or off",
  ),
  row(
    "max_package_bytes",
    "--max-package-bytes",
    "size",
    "100 MiB",
    "largest agent package InstallAgent accepts, compressed (bytes, or with a unit: 100MiB)",
  ),
  row(
    "backend",
    "--backend",
    "string",
    "local",
    "local: supervise processes on this host; kubernetes: run agents on a cluster",
    { choices: BACKENDS },
  ),
  row(
    "kubeconfig",
    "--kubeconfig",
    "path",
    "none",
    "kubernetes backend: kubeconfig file; none: $KUBECONFIG, ~/.kube/config, or in-cluster",
  ),
  row(
    "namespace",
    "--namespace",
    "string",
    "none",
    "kubernetes backend: namespace of the agents; none: the kubeconfig context's, else default",
  ),
]);

/** The row of `key`. */
export function serverConfigKeyInfo(key: ServerConfigKey): ServerConfigKeyInfo {
  const info = SERVER_CONFIG_KEYS.find((candidate) => candidate.key === key);
  // The table covers the whole union; reaching this is a bug in this module.
  if (info === undefined) throw new Error(`no server config key ${key}`);
  return info;
}

/** True when `key` is a server configuration key. */
export function isServerConfigKey(key: string): key is ServerConfigKey {
  return SERVER_CONFIG_KEYS.some((info) => info.key === key);
}
