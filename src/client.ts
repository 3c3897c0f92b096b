/**
 * `atoll-deploy/client` (SPEC §10): the typed gRPC client of `atoll.deployment.v1.DeploymentService`
 * that the `atoll-deploy` CLI uses. One method per RPC, named in camelCase: unary RPCs return a
 * promise of the response message, server-streaming RPCs (`streamLogs`, `watchHealth`) an async
 * iterable; a failed call rejects with {@link RpcError}, carrying the `ErrorInfo` reason.
 *
 * @example
 * import { createDeploymentClient, AgentState } from "atoll-deploy/client";
 * const client = createDeploymentClient("127.0.0.1:50051");
 * const { agent } = await client.deploy({ name: "greeter" });
 * console.log(agent?.port, agent?.state === AgentState.RUNNING);
 * for await (const event of client.watchHealth({})) console.log(event.type, event.agent?.name);
 * client.close();
 */
import {
  type ChannelCredentials,
  type ClientOptions,
  credentials as grpcCredentials,
  InterceptingCall,
  type Interceptor,
} from "@grpc/grpc-js";
import { DeploymentService } from "../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { createClient, type ServiceClient } from "./rpc/grpc-client.ts";

export type {
  Agent,
  AgentState as AgentStateValue,
  ExitInfo,
  HealthStatus as HealthStatusValue,
} from "../gen/atoll/deployment/v1/agent_pb.ts";
/** `AGENT_STATE_*` values of `Agent.state`, by short name (`AgentState.RUNNING`). */
export { AgentState, HealthStatus } from "../gen/atoll/deployment/v1/agent_pb.ts";
export type {
  WatchEventType as WatchEventTypeValue,
  WatchHealthResponse,
} from "../gen/atoll/deployment/v1/deployment_service_pb.ts";
/** The service descriptor (protobuf-es) and the `WATCH_EVENT_TYPE_*` values by short name. */
export {
  DeploymentService,
  WatchEventType,
} from "../gen/atoll/deployment/v1/deployment_service_pb.ts";
export {
  type ClientCallOptions,
  RpcError,
  type ServerStreamingClientMethod,
  type UnaryClientMethod,
} from "./rpc/grpc-client.ts";

/** A client of `DeploymentService`: one method per RPC, plus `close()`. */
export type DeploymentClient = ServiceClient<typeof DeploymentService>;

/** TLS material (PEM) for {@link DeploymentClientOptions.tls}. */
export interface ClientTls {
  /** CA certificates that sign the server's certificate; default the system's trusted roots. */
  readonly ca?: Buffer | string | undefined;
  /** Client certificate chain, for mutual TLS (with `key`). */
  readonly cert?: Buffer | string | undefined;
  /** Client private key, for mutual TLS (with `cert`). */
  readonly key?: Buffer | string | undefined;
}

/** Options of {@link createDeploymentClient}. */
export interface DeploymentClientOptions {
  /** Bearer token sent as `authorization: Bearer <token>` with every call (`auth_token_file`). */
  readonly token?: string | undefined;
  /** TLS to the server: `true` with the system's roots, or the PEM material. Default plaintext. */
  readonly tls?: true | ClientTls | undefined;
  /**
   * grpc-js channel credentials, instead of `tls` (they must come from this package's copy of
   * `@grpc/grpc-js`).
   */
  readonly credentials?: ChannelCredentials | undefined;
  /**
   * grpc-js channel options, over the defaults: reconnection backoff from 250 ms up to 5 s (so a
   * restarted server is found again within seconds; grpc-js waits up to two minutes).
   */
  readonly channelOptions?: ClientOptions | undefined;
}

/** The channel options of every client unless overridden. */
const CHANNEL_DEFAULTS: ClientOptions = {
  "grpc.initial_reconnect_backoff_ms": 250,
  "grpc.max_reconnect_backoff_ms": 5_000,
};

function pem(value: Buffer | string | undefined): Buffer | null {
  return value === undefined ? null : Buffer.from(value);
}

function channelCredentials(options: DeploymentClientOptions): ChannelCredentials {
  if (options.credentials !== undefined) return options.credentials;
  const { tls } = options;
  if (tls === undefined) return grpcCredentials.createInsecure();
  if (tls === true) return grpcCredentials.createSsl();
  return grpcCredentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

/** Adds `authorization` to the metadata of every call that does not carry one already. */
function bearerInterceptor(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (metadata.get("authorization").length === 0) {
          metadata.set("authorization", `Bearer ${token}`);
        }
        next(metadata, listener);
      },
    });
}

/**
 * A client of the server at `address` (`127.0.0.1:50051`, `unix:/run/atoll-deploy.sock`) on its
 * own channel, which connects at the first call; `close()` it when done.
 * @throws TypeError for a `token` that is empty or holds whitespace.
 */
export function createDeploymentClient(
  address: string,
  options: DeploymentClientOptions = {},
): DeploymentClient {
  const { token } = options;
  if (token !== undefined && (token === "" || /\s/.test(token))) {
    throw new TypeError("token must be one non-empty word");
  }
  const interceptors = token === undefined ? [] : [bearerInterceptor(token)];
  return createClient(DeploymentService, address, channelCredentials(options), {
    ...CHANNEL_DEFAULTS,
    ...options.channelOptions,
    ...(interceptors.length > 0 && { interceptors }),
  });
}
