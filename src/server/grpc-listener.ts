/**
 * The gRPC listener part (SPEC §6): `DeploymentService`, health and reflection on `listen`,
 * with the bearer-token check and TLS of SPEC §3.
 */
import type { ServerConfig } from "../config/server-config-types.ts";
import type { AgentBackend } from "../core/agent-backend.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import type { CallObserver } from "../rpc/call-observer.ts";
import { type DeploymentApi, startRpcServer } from "../rpc/server.ts";
import type { ListenerPart } from "./server-parts.ts";

/** The gRPC listener, and the handler set it mounts (which the HTTP listener mounts too). */
export interface GrpcListener extends ListenerPart {
  readonly api: DeploymentApi;
}

/**
 * Binds `address` and serves `backend`.
 * @throws Error (one line) when the address is busy or unusable, or a TLS file cannot be read.
 */
export async function startGrpcListener(options: {
  readonly address: string;
  readonly config: ServerConfig;
  /** The bearer token every RPC but health must carry; none: no auth. */
  readonly authToken: string | undefined;
  readonly backend: AgentBackend;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Told of every call and its status (metrics); none by default. */
  readonly observer?: CallObserver | undefined;
}): Promise<GrpcListener> {
  const { config } = options;
  const server = await startRpcServer({
    backend: options.backend,
    clock: options.clock,
    logger: options.logger,
    listen: options.address,
    authToken: options.authToken,
    tlsCert: config.tlsCert,
    tlsKey: config.tlsKey,
    tlsClientCa: config.tlsClientCa,
    observer: options.observer,
  });
  return {
    kind: "grpc",
    address: server.address,
    api: server.api,
    beginDrain: () => server.beginDrain(),
    close: (graceMs) => server.close(graceMs),
  };
}
