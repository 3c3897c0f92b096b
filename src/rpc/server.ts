import { chmod, readFile } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { AgentBackend } from "../core/agent-backend.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/logger.ts";
import { prepareSocketPath, removeSocketPath, SocketPathBusy } from "../platform/unix-socket.ts";
import { createBearerAuthInterceptor } from "./auth.ts";
import type { CallObserver } from "./call-observer.ts";
import { createDeploymentService } from "./deployment-service.ts";
import { createErrorToStatus, type ErrorToStatus } from "./error-mapping.ts";
import { addService } from "./grpc-adapter.ts";
import { addHealthAndReflection, type ServerHealth } from "./health-and-reflection.ts";
import { DEFAULT_MAX_REQUEST_STREAM_BYTES, type ServiceHandlers } from "./service-handlers.ts";
import type { StreamCap } from "./stream-limits.ts";

/** Largest request or response message, bytes (requests here are tiny; this bounds abuse). */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface RpcServerOptions {
  readonly backend: AgentBackend;
  readonly clock: Clock;
  readonly logger: Logger;
  /** `host:port` (port 0 picks a free one) or `unix:/path`. */
  readonly listen: string;
  /** When set, every RPC but health must carry `authorization: Bearer <authToken>`. */
  readonly authToken?: string | undefined;
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  readonly tlsClientCa?: string | undefined;
  readonly heartbeatIntervalMs?: number;
  /** Caps on WatchHealth streams, overall and per client (see `stream-limits.ts`). */
  readonly watchCap?: StreamCap;
  /** Caps on StreamLogs follow streams, overall and per client. */
  readonly logFollowCap?: StreamCap;
  /** Told of every DeploymentService call and its status code (metrics). */
  readonly observer?: CallObserver | undefined;
}

/**
 * The DeploymentService as the gRPC server serves it, for other transports to mount as it is
 * (DESIGN.md "One handler set, two transports"): the very handler objects, whose watches and log
 * follows end with UNAVAILABLE when this server begins to drain, and the error mapping.
 */
export interface DeploymentApi {
  readonly handlers: ServiceHandlers<typeof DeploymentService>;
  readonly toStatus: ErrorToStatus;
  /**
   * The bound on a client stream's total bytes (InstallAgent), the same on every transport.
   * Default {@link DEFAULT_MAX_REQUEST_STREAM_BYTES}.
   */
  readonly maxRequestStreamBytes?: number;
}

/** Bytes an InstallAgent stream may carry beyond the archive: its header and message framing. */
export const INSTALL_STREAM_OVERHEAD_BYTES = 1024 * 1024;

/** A listening gRPC server and the steps of its orderly shutdown. */
export interface RpcServer {
  /** The bound address: `host:port` with the real port, or `unix:/path`. */
  readonly address: string;
  readonly health: ServerHealth;
  /** The handlers and error mapping this server mounts (the HTTP listener mounts them too). */
  readonly api: DeploymentApi;
  /**
   * First step of a shutdown: health NOT_SERVING, open watches and log follows
   * end with UNAVAILABLE, new operations are refused by the backend.
   */
  beginDrain(): void;
  /** Waits for in-flight calls up to `graceMs`, then closes every connection. */
  close(graceMs: number): Promise<void>;
}

async function credentials(options: RpcServerOptions): Promise<grpc.ServerCredentials> {
  if (options.tlsCert === undefined && options.tlsKey === undefined) {
    return grpc.ServerCredentials.createInsecure();
  }
  if (options.tlsCert === undefined || options.tlsKey === undefined) {
    throw new Error("tls_cert and tls_key must be given together");
  }
  const [cert, key, ca] = await Promise.all([
    readFile(options.tlsCert),
    readFile(options.tlsKey),
    options.tlsClientCa === undefined ? undefined : readFile(options.tlsClientCa),
  ]);
  // With a client CA, clients must present a certificate signed by it (mutual TLS).
  return grpc.ServerCredentials.createSsl(
    ca ?? null,
    [{ private_key: key, cert_chain: cert }],
    ca !== undefined,
  );
}

/** Builds, binds and starts the gRPC server. Rejects with a one-line error when the address is busy. */
export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const interceptors =
    options.authToken === undefined
      ? []
      : [
          createBearerAuthInterceptor({
            token: options.authToken,
            ...(options.observer !== undefined && { observer: options.observer }),
          }),
        ];
  const server = new grpc.Server({
    interceptors,
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    // Keep long WatchHealth/StreamLogs streams alive through idle NATs and notice dead peers.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.keepalive_permit_without_calls": 1,
  });
  const drain = new AbortController();
  const toStatus = createErrorToStatus(options.logger);
  const handlers = createDeploymentService({
    backend: options.backend,
    clock: options.clock,
    shutdownSignal: drain.signal,
    ...(options.heartbeatIntervalMs !== undefined && {
      heartbeatIntervalMs: options.heartbeatIntervalMs,
    }),
    ...(options.watchCap !== undefined && { watchCap: options.watchCap }),
    ...(options.logFollowCap !== undefined && { logFollowCap: options.logFollowCap }),
  });
  // The one client stream (InstallAgent) carries at most a package and its framing.
  const maxRequestStreamBytes =
    options.backend.packages === undefined
      ? DEFAULT_MAX_REQUEST_STREAM_BYTES
      : options.backend.packages.maxPackageBytes + INSTALL_STREAM_OVERHEAD_BYTES;
  addService(server, DeploymentService, handlers, {
    toStatus,
    logger: options.logger,
    maxRequestStreamBytes,
    ...(options.observer !== undefined && { observer: options.observer }),
  });
  const health = addHealthAndReflection(server, [DeploymentService]);
  const creds = await credentials(options);
  const socketPath = options.listen.startsWith("unix:")
    ? options.listen.slice("unix:".length).replace(/^\/\//, "")
    : undefined;
  if (socketPath !== undefined) {
    try {
      if ((await prepareSocketPath(socketPath)) === "stale-removed") {
        options.logger.warn("removed a stale socket nothing was listening on", {
          path: socketPath,
        });
      }
    } catch (error) {
      if (error instanceof SocketPathBusy) {
        throw new Error(`cannot listen on ${options.listen}: ${error.message}`);
      }
      throw error;
    }
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, creds, (error, boundPort) => {
      if (error) reject(new Error(`cannot listen on ${options.listen}: ${error.message}`));
      else resolve(boundPort);
    });
  });
  if (socketPath !== undefined) {
    // Only the daemon's user may talk to it through the socket.
    await chmod(socketPath, 0o600);
  }
  const address =
    socketPath !== undefined ? options.listen : options.listen.replace(/:\d+$/, `:${port}`);
  return {
    address,
    health,
    api: { handlers, toStatus, maxRequestStreamBytes },
    beginDrain() {
      health.setNotServing();
      drain.abort();
    },
    async close(graceMs) {
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      if (socketPath !== undefined) {
        await removeSocketPath(socketPath).catch((error: unknown) =>
          options.logger.warn("cannot remove the socket file", {
            path: socketPath,
            error: String(error),
          }),
        );
      }
    },
  };
}
