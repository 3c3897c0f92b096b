/**
 * The effective server configuration (SPEC §3) after merging
 * defaults < config file < ATOLL_DEPLOY_* environment < flags.
 * Durations in milliseconds.
 */
export interface ServerConfig {
  /** false: `serve` says the server is disabled by config and exits 0. */
  readonly enabled: boolean;
  /** Address agents bind and are probed on (`{host}`); default "localhost". */
  readonly host: string;
  /** First agent port; default 8100. */
  readonly basePort: number;
  /** Last agent port; default basePort + 999. */
  readonly maxPort: number;
  /** Most agents live at once; default 10. */
  readonly maxAgents: number;
  /** Default probe period; default 30000. */
  readonly healthCheckIntervalMs: number;
  /** Default for `auto_restart`; default true. */
  readonly restartOnFailure: boolean;
  /** Default for agents' `max_restarts`; default 3. */
  readonly maxRestarts: number;
  /** Absolute path of the discovery root; default `<cwd>/atoll_agents`. */
  readonly agentsDirectory: string;
  /**
   * gRPC address, `host:port` or `unix:/path`; default "127.0.0.1:50051". Undefined: no gRPC
   * listener (the default of an embedded `DeploymentServer`, which opens no socket unasked).
   */
  readonly listen: string | undefined;
  /** Absolute path of the state directory (state.json, logs/). */
  readonly stateDir: string;
  /** Absolute path of the bearer-token file; undefined: no authentication. */
  readonly authTokenFile: string | undefined;
  /** Absolute path of the TLS certificate chain (PEM); undefined: plaintext. */
  readonly tlsCert: string | undefined;
  /** Absolute path of the TLS private key (PEM); set exactly when `tlsCert` is. */
  readonly tlsKey: string | undefined;
  /** Absolute path of the CA of client certificates (mutual TLS); undefined: none asked. */
  readonly tlsClientCa: string | undefined;
  /** Daemon log level; default "info". */
  readonly logLevel: "debug" | "info" | "warn" | "error";
  /** Default size at which an agent's log is rotated, bytes; default 10 MiB (SPEC §4). */
  readonly logMaxBytes: number;
  /** Default number of rotated log files kept per agent; default 3. */
  readonly logKeep: number;
  /**
   * HTTP address of the dashboard, `/metrics` and the Connect / gRPC-Web API (`host:port`, port 0
   * picks a free one); default "127.0.0.1:50052"; undefined when `http_listen` is `off`.
   */
  readonly httpListen: string | undefined;
  /** Largest agent package (SPEC §12) accepted, compressed, in bytes; default 100 MiB. */
  readonly maxPackageBytes: number;
  /** Where agents run: `local` (default) or `kubernetes` (SPEC §11). */
  readonly backend: "local" | "kubernetes";
  /** Kubernetes backend: the kubeconfig file; undefined = $KUBECONFIG, ~/.kube/config, in-cluster. */
  readonly kubeconfig: string | undefined;
  /** Kubernetes backend: the namespace (a DNS-1123 label); undefined = the context's, else "default". */
  readonly namespace: string | undefined;
}
