/**
 * What a handler of an RPC is, whichever transport serves it: the one handler set that grpc-js
 * (`grpc-adapter.ts`) and Connect (`src/http/connect-adapter.ts`) both mount, keyed by method.
 *
 * Handlers receive a `CallContext` whose `signal` aborts when the client cancels or the deadline
 * passes. Unary handlers return (a promise of) the response; server-streaming handlers return an
 * `AsyncIterable` of responses, pulled only as fast as the client reads; client-streaming
 * handlers read an `AsyncIterable` of requests, delivered only as fast as they read it, bounded
 * in total bytes, and return the response.
 */
import type {
  DescMessage,
  DescMethod,
  DescService,
  MessageInitShape,
  MessageShape,
} from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { DeployError } from "../core/errors.ts";
import type { RpcSignature } from "./rpc-signature.ts";

/** What a handler knows about its call besides the request. */
export interface CallContext {
  /** The RPC being served. */
  readonly method: DescMethod;
  /**
   * Aborted when the client cancels, the connection breaks or the deadline passes, while the
   * call is open (reason: a DOMException named `AbortError` or `TimeoutError`); never after the
   * adapter has sent the response or status. Pass it to every long-running operation.
   */
  readonly signal: AbortSignal;
  /** Request headers (custom metadata) sent by the client. */
  readonly metadata: grpc.Metadata;
  /** The client's deadline, or undefined when it set none. */
  readonly deadline: Date | undefined;
  /** The client's address as grpc-js reports it (`ipv4:127.0.0.1:53124`, `unix:...`). */
  readonly peer: string;
}

/**
 * A response already encoded, for answers that many calls or streams share (an agent's status, a
 * watch event sent to a thousand watchers): encoded once, its bytes go out as they are.
 */
export class EncodedMessage<O extends DescMessage = DescMessage> {
  readonly schema: O;
  readonly bytes: Uint8Array;
  /** @param bytes the protobuf encoding of a `schema` message (not checked: encode it yourself). */
  constructor(schema: O, bytes: Uint8Array) {
    this.schema = schema;
    this.bytes = bytes;
  }
}

/** What a handler answers: a message, an init object, or an {@link EncodedMessage}. */
export type Reply<O extends DescMessage> = MessageInitShape<O> | EncodedMessage<O>;

/** A unary RPC: one request, one response. */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext,
) => Promise<Reply<O>>;

/**
 * A server-streaming RPC: the responses in order; the stream ends OK when the iterable ends, or
 * with the mapped status when it throws. It must end when `context.signal` aborts: the adapter
 * stops pulling and calls `return()` on it, but cannot interrupt an await inside it.
 */
export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext,
) => AsyncIterable<Reply<O>>;

/**
 * A client-streaming RPC: the requests in order, then one response (or a thrown error, mapped).
 * Iterating `requests` throws the call's abort reason when the client cancels or the connection
 * breaks (so an interrupted upload is never mistaken for a complete one), DeployError
 * INVALID_ARGUMENT for a request that does not decode, and DeployError REQUEST_TOO_LARGE once
 * the stream passes `maxRequestStreamBytes`; it ends when the client half-closes. The handler may
 * answer before reading everything: the rest is discarded.
 */
export type ClientStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  context: CallContext,
) => Promise<Reply<O>>;

/** The handler type of one method descriptor; `never` for bidi streaming (unsupported). */
export type MethodHandler<M> = RpcSignature<M, "server">;

/** One handler per RPC of `S`, keyed by the method's local name (`deploy`, `watchHealth`). */
export type ServiceHandlers<S extends DescService> = {
  readonly [K in keyof S["method"]]: MethodHandler<S["method"][K]>;
};

/** Default bound of a client stream's total bytes: 4 MiB, the size of one message. */
export const DEFAULT_MAX_REQUEST_STREAM_BYTES = 4 * 1024 * 1024;

/** The REQUEST_TOO_LARGE a client stream's iterator throws once it passes `limit` bytes. */
export function requestStreamTooLarge(method: DescMethod, limit: number): DeployError {
  return new DeployError(
    "REQUEST_TOO_LARGE",
    `the ${method.name} request stream passed its limit of ${limit} bytes`,
    { limit_bytes: String(limit) },
  );
}

/** The reason a call's signal aborts with (see {@link CallContext.signal}). */
export function callAbortReason(timedOut: boolean): DOMException {
  return timedOut
    ? new DOMException("the call's deadline passed", "TimeoutError")
    : new DOMException("the client cancelled the call", "AbortError");
}

/** The gRPC path of a method: `/atoll.deployment.v1.DeploymentService/Deploy`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** How one transport wraps a handler of each supported kind into what it mounts. */
export interface HandlerWrappers<T> {
  unary(method: DescMethod, handler: UnaryHandler<DescMessage, DescMessage>): T;
  serverStreaming(method: DescMethod, handler: ServerStreamingHandler<DescMessage, DescMessage>): T;
  clientStreaming(method: DescMethod, handler: ClientStreamingHandler<DescMessage, DescMessage>): T;
}

/**
 * Every handler of `service` wrapped by its method's kind, keyed by the method's local name.
 * Throws TypeError when a handler is missing or a method is bidi-streaming (no transport here
 * serves it).
 */
export function wrapHandlers<S extends DescService, T>(
  service: S,
  handlers: ServiceHandlers<S>,
  wrappers: HandlerWrappers<T>,
): Record<string, T> {
  const byName = handlers as unknown as Readonly<Record<string, unknown>>;
  const wrapped: Record<string, T> = {};
  for (const method of service.methods) {
    const handler = byName[method.localName];
    if (typeof handler !== "function") {
      throw new TypeError(`no handler for ${method.parent.typeName}.${method.name}`);
    }
    switch (method.methodKind) {
      case "unary":
        wrapped[method.localName] = wrappers.unary(
          method,
          handler as UnaryHandler<DescMessage, DescMessage>,
        );
        break;
      case "server_streaming":
        wrapped[method.localName] = wrappers.serverStreaming(
          method,
          handler as ServerStreamingHandler<DescMessage, DescMessage>,
        );
        break;
      case "client_streaming":
        wrapped[method.localName] = wrappers.clientStreaming(
          method,
          handler as ClientStreamingHandler<DescMessage, DescMessage>,
        );
        break;
      default:
        throw new TypeError(
          `${method.parent.typeName}.${method.name}: ${method.methodKind} methods are not supported`,
        );
    }
  }
  return wrapped;
}
