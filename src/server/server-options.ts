/**
 * The options of `new DeploymentServer(options)`: SPEC §3's keys in camelCase, checked by the
 * config loader exactly as the config file's `deployment` object is (this module only renames
 * them and adds the embedding's own options), plus what an embedding program provides instead
 * of the CLI's process globals.
 */
import os from "node:os";
import { isConfigError } from "../config/config-error.ts";
import { closestKey } from "../config/config-values.ts";
import { type LoadedServerConfig, loadServerConfig } from "../config/server-config.ts";
import { SERVER_CONFIG_KEYS, type ServerConfigKey } from "../config/server-config-keys.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { DeployError } from "../core/errors.ts";
import { createJsonLogger, type Logger } from "../core/logger.ts";

/**
 * SPEC §3's server configuration keys in camelCase, with the types, units and rules of the
 * config file (integers are JSON integers, booleans are booleans, durations are seconds; no
 * text parsing). An option left out or `undefined` takes its default.
 */
export interface ServerConfigOptions {
  /** false: `start()` starts nothing. Default true. */
  readonly enabled?: boolean | undefined;
  /** Address agents bind and are probed on (`{host}`). Default `"localhost"`. */
  readonly host?: string | undefined;
  /** First agent port (1–65535). Default 8100. */
  readonly basePort?: number | undefined;
  /** Last agent port, at least `basePort`. Default `basePort + 999` (at most 65535). */
  readonly maxPort?: number | undefined;
  /** Most agents live (not STOPPED/FAILED/DISCOVERED/INVALID) at once (≥ 1). Default 10. */
  readonly maxAgents?: number | undefined;
  /** Default liveness probe period, in seconds (0.001–…). Default 30. */
  readonly healthCheckInterval?: number | undefined;
  /** Default of an agent's `auto_restart`. Default true. */
  readonly restartOnFailure?: boolean | undefined;
  /** Default of an agent's `max_restarts` (≥ 0). Default 3. */
  readonly maxRestarts?: number | undefined;
  /** The agents directory (discovery root), relative to `cwd`; `~` is the home directory. Default `./atoll_agents`. */
  readonly agentsDirectory?: string | undefined;
  /**
   * gRPC address to serve `DeploymentService` on: `host:port` (port 0 picks a free one; read it
   * from `address`) or `unix:/path` (mode 0600). Default: none, no socket is opened (the CLI's
   * default, `127.0.0.1:50051`, does not apply to an embedded server).
   */
  readonly listen?: string | undefined;
  /** State file and agent logs, relative to `cwd`. Default `$XDG_STATE_HOME/atoll-deploy`, else `~/.local/state/atoll-deploy`. */
  readonly stateDir?: string | undefined;
  /** With `listen`: a file holding the bearer token every RPC but health must carry. Default none. */
  readonly authTokenFile?: string | undefined;
  /** With `listen`: TLS certificate chain (PEM file). Default none (plaintext). */
  readonly tlsCert?: string | undefined;
  /** With `listen`: TLS private key (PEM file), required with `tlsCert`. Default none. */
  readonly tlsKey?: string | undefined;
  /** With `listen` and TLS: CA of client certificates, for mutual TLS. Default none. */
  readonly tlsClientCa?: string | undefined;
  /**
   * HTTP address of the dashboard, `/metrics` and the DeploymentService over Connect and
   * gRPC-Web (SPEC §9), `host:port` (port 0 picks a free one; read it from `httpUrl`), or `"off"`.
   * Needs `listen` (it serves the gRPC listener's handlers). Default: none, no socket is opened
   * (the CLI's default, `127.0.0.1:50052`, does not apply to an embedded server).
   */
  readonly httpListen?: string | undefined;
  /** Level of the default logger (`logger` ignores it). Default `"info"`. */
  readonly logLevel?: "debug" | "info" | "warn" | "error" | undefined;
  /** Default rotation size of an agent's log (SPEC §4): bytes, or a size such as `"10MiB"`. Default 10 MiB. */
  readonly logMaxBytes?: number | string | undefined;
  /** Default number of rotated log files kept per agent. Default 3. */
  readonly logKeep?: number | undefined;
  /** Largest agent package accepted by `InstallAgent` (SPEC §12), compressed: bytes, or a size such as `"100MiB"`. Default 100 MiB. */
  readonly maxPackageBytes?: number | string | undefined;
  /** Where agents run: `local` processes of this host, or `kubernetes` (SPEC §11). Default `"local"`. */
  readonly backend?: "local" | "kubernetes" | undefined;
  /** Kubernetes backend: the kubeconfig file. Default `$KUBECONFIG`, `~/.kube/config`, else in-cluster. */
  readonly kubeconfig?: string | undefined;
  /** Kubernetes backend: the namespace (a DNS-1123 label). Default the context's, else `default`. */
  readonly namespace?: string | undefined;
}

/** The options of `new DeploymentServer(options)`. */
export interface DeploymentServerOptions extends ServerConfigOptions {
  /**
   * Where the server logs (structured: a message and fields per call). Default: one JSON object
   * per line on `process.stderr`, from `logLevel` up.
   */
  readonly logger?: Logger | undefined;
  /** Base of relative paths (`agentsDirectory`, `stateDir`, ...). Default `process.cwd()`. */
  readonly cwd?: string | undefined;
  /**
   * The environment agents inherit (SPEC §2 adds its variables), also read for the default
   * `stateDir` (`XDG_STATE_HOME`). Default `process.env`. `ATOLL_DEPLOY_*` variables and the
   * config file are the CLI's sources: an embedded server reads neither.
   */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
}

type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// Compile-time check: one option per key of the key table and no other, so a key added to the
// table does not compile until its option is declared above.
true satisfies Same<keyof ServerConfigOptions, CamelCase<ServerConfigKey>>;

const EMBEDDING_OPTIONS: ReadonlySet<string> = new Set(["logger", "cwd", "env"]);

function camelCase(key: ServerConfigKey): string {
  return key.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

const KEY_BY_OPTION: ReadonlyMap<string, ServerConfigKey> = new Map(
  SERVER_CONFIG_KEYS.map(({ key }) => [camelCase(key), key]),
);

/** A checked configuration and what the server runs with; built only by this module and the CLI. */
export class ServerSetup {
  readonly loaded: LoadedServerConfig;
  readonly logger: Logger;
  /** The environment agents inherit. */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly clock: Clock;

  constructor(init: {
    readonly loaded: LoadedServerConfig;
    readonly logger: Logger;
    readonly env: Readonly<Record<string, string | undefined>>;
    readonly clock?: Clock;
  }) {
    this.loaded = init.loaded;
    this.logger = init.logger;
    this.env = init.env;
    this.clock = init.clock ?? systemClock;
  }
}

function invalid(message: string, cause?: unknown): DeployError {
  return new DeployError("INVALID_ARGUMENT", `DeploymentServer ${message}`, {}, { cause });
}

/**
 * Checks `options` and loads the configuration from them.
 * @throws DeployError INVALID_ARGUMENT naming the option: an unknown option, a wrong type, a
 *   value out of range, or an inconsistent combination (as the config file would be refused).
 */
export function setupFromOptions(options: DeploymentServerOptions): ServerSetup {
  if (typeof options !== "object" || options === null) {
    throw invalid(`options must be an object, got ${options === null ? "null" : typeof options}`);
  }
  const values: Partial<Record<ServerConfigKey, unknown>> = {};
  for (const [name, value] of Object.entries(options)) {
    if (EMBEDDING_OPTIONS.has(name)) continue;
    const key = KEY_BY_OPTION.get(name);
    if (key === undefined) {
      const guess = closestKey(name, [...KEY_BY_OPTION.keys(), ...EMBEDDING_OPTIONS]);
      throw invalid(
        `option ${name} is unknown${guess === undefined ? "" : ` (did you mean ${guess}?)`}`,
      );
    }
    values[key] = value;
  }
  const env = options.env ?? process.env;
  let loaded: LoadedServerConfig;
  try {
    loaded = loadServerConfig({
      flags: {},
      // Only for the default state directory: ATOLL_DEPLOY_* variables are the CLI's.
      env: { XDG_STATE_HOME: env.XDG_STATE_HOME },
      cwd: options.cwd ?? process.cwd(),
      homeDir: os.homedir(),
      options: { values, label: (key) => `option ${camelCase(key)}` },
    });
  } catch (error) {
    if (isConfigError(error)) throw invalid(error.message, error);
    throw error;
  }
  // An embedded server opens a socket only when asked to.
  const config = Object.freeze({
    ...loaded.config,
    listen: loaded.sources.listen === "default" ? undefined : loaded.config.listen,
    httpListen: loaded.sources.http_listen === "default" ? undefined : loaded.config.httpListen,
  });
  return new ServerSetup({
    loaded: { ...loaded, config },
    logger: options.logger ?? createJsonLogger({ sink: process.stderr, level: config.logLevel }),
    env,
  });
}
