/**
 * The typed grpc-js client of any protobuf-es `DescService`: one method per RPC, unary as a
 * promise, server streaming as an async iterable, client streaming as a promise over an
 * (async) iterable of requests; failures as `RpcError` carrying the `ErrorInfo` the server's
 * error mapping put in the trailers.
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  isMessage,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  type ChannelCredentials,
  Client,
  type ClientOptions,
  type CallOptions as GrpcCallOptions,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { runInBackground } from "../core/background-task.ts";
import { decodeErrorInfo } from "./error-mapping.ts";
import { toBuffer } from "./grpc-codec.ts";
import type { RpcSignature } from "./rpc-signature.ts";
import { writable } from "./stream-writable.ts";

/** A failed call: the gRPC status and the decoded `google.rpc.ErrorInfo`, if the server sent one. */
export class RpcError extends Error {
  override readonly name = "RpcError";
  /** gRPC status code (`status.NOT_FOUND`, ...). */
  readonly code: status;
  /** The status message. */
  readonly details: string;
  /** `ErrorInfo.reason` (`AGENT_NOT_FOUND`, ...); undefined when the server sent none. */
  readonly reason: string | undefined;
  /** `ErrorInfo.metadata` (for example `agent`); empty when there is none. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The raw response trailers. */
  readonly trailers: Metadata;

  constructor(
    code: status,
    details: string,
    init: {
      readonly reason?: string | undefined;
      readonly metadata?: Readonly<Record<string, string>>;
      readonly trailers?: Metadata;
      readonly cause?: unknown;
    } = {},
  ) {
    super(`${status[code] ?? code}: ${details}`, { cause: init.cause });
    this.code = code;
    this.details = details;
    this.reason = init.reason;
    this.metadata = Object.freeze({ ...init.metadata });
    this.trailers = init.trailers ?? new Metadata();
  }

  /** An RpcError for anything a grpc-js call failed with. */
  static from(error: unknown): RpcError {
    if (error instanceof RpcError) return error;
    if (isServiceError(error)) {
      const info = decodeErrorInfo(error.metadata);
      return new RpcError(error.code, error.details, {
        reason: info?.reason,
        metadata: info?.metadata ?? {},
        trailers: error.metadata,
        cause: error,
      });
    }
    const message = error instanceof Error ? error.message : String(error);
    return new RpcError(status.UNKNOWN, message, { cause: error });
  }
}

function isServiceError(error: unknown): error is ServiceError {
  return (
    error instanceof Error &&
    typeof (error as Partial<ServiceError>).code === "number" &&
    (error as Partial<ServiceError>).metadata instanceof Metadata
  );
}

/** Options of one call. */
export interface ClientCallOptions {
  /** Aborting cancels the call; it then fails with RpcError CANCELLED. */
  readonly signal?: AbortSignal;
  /** Time allowed for the call, in milliseconds from its start; none by default. */
  readonly deadlineMs?: number;
  /** Request headers, such as `authorization`. */
  readonly metadata?: Metadata | Readonly<Record<string, string>>;
}

/** A unary RPC: resolves with the response, rejects with {@link RpcError}. */
export type UnaryClientMethod<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: ClientCallOptions,
) => Promise<MessageShape<O>>;

/**
 * A server-streaming RPC: iterating starts the call; leaving the loop early (break, throw)
 * cancels it; a failed call throws {@link RpcError} from the loop.
 */
export type ServerStreamingClientMethod<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: ClientCallOptions,
) => AsyncIterable<MessageShape<O>>;

/**
 * Sends the requests of `requests` in order, pulling the next one only when the channel has
 * room (HTTP/2 flow control), half-closes when it ends, and resolves with the response. Rejects
 * with RpcError: the server's status when it answers with an error (possibly before everything
 * was sent: sending stops there); CANCELLED when `signal` aborts; CANCELLED with the error as
 * `cause` when iterating `requests` throws (the call is cancelled, so the server never takes a
 * truncated stream for a complete one).
 */
export type ClientStreamingClientMethod<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageInitShape<I>> | Iterable<MessageInitShape<I>>,
  options?: ClientCallOptions,
) => Promise<MessageShape<O>>;

/** The client method type of one method descriptor; `never` for bidi streaming. */
export type ClientMethod<M> = RpcSignature<M, "client">;

/** One method per RPC of `S` by local name, plus `close()` for the channel. */
export type ServiceClient<S extends DescService> = {
  readonly [K in keyof S["method"]]: ClientMethod<S["method"][K]>;
} & {
  /** Closes the channel; calls in flight fail with UNAVAILABLE or CANCELLED. */
  close(): void;
};

function requestMetadata(options: ClientCallOptions): Metadata {
  const given = options.metadata;
  if (given instanceof Metadata) return given;
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(given ?? {})) metadata.set(key, value);
  return metadata;
}

function grpcCallOptions(options: ClientCallOptions): GrpcCallOptions {
  return options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs };
}

function cancelledBeforeStart(signal: AbortSignal): RpcError {
  return new RpcError(status.CANCELLED, "cancelled before the call started", {
    cause: signal.reason,
  });
}

function unaryMethod(
  client: Client,
  method: DescMethod,
): UnaryClientMethod<DescMessage, DescMessage> {
  const path = `/${method.parent.typeName}/${method.name}`;
  const serialize = (value: MessageShape<DescMessage>): Buffer =>
    toBuffer(toBinary(method.input, value));
  const deserialize = (bytes: Buffer): MessageShape<DescMessage> =>
    fromBinary(method.output, bytes);
  return (request, options = {}) =>
    new Promise((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted === true) {
        reject(cancelledBeforeStart(signal));
        return;
      }
      const message = isMessage(request, method.input) ? request : create(method.input, request);
      const onAbort = (): void => call.cancel();
      const call = client.makeUnaryRequest(
        path,
        serialize,
        deserialize,
        message,
        requestMetadata(options),
        grpcCallOptions(options),
        (error, response) => {
          signal?.removeEventListener("abort", onAbort);
          if (error !== null) reject(RpcError.from(error));
          else if (response === undefined) reject(new RpcError(status.INTERNAL, "no response"));
          else resolve(response);
        },
      );
      signal?.addEventListener("abort", onAbort, { once: true });
    });
}

function serverStreamingMethod(
  client: Client,
  method: DescMethod,
): ServerStreamingClientMethod<DescMessage, DescMessage> {
  const path = `/${method.parent.typeName}/${method.name}`;
  const serialize = (value: MessageShape<DescMessage>): Buffer =>
    toBuffer(toBinary(method.input, value));
  const deserialize = (bytes: Buffer): MessageShape<DescMessage> =>
    fromBinary(method.output, bytes);
  return async function* (request, options = {}) {
    const { signal } = options;
    if (signal?.aborted === true) throw cancelledBeforeStart(signal);
    const message = isMessage(request, method.input) ? request : create(method.input, request);
    const call = client.makeServerStreamRequest(
      path,
      serialize,
      deserialize,
      message,
      requestMetadata(options),
      grpcCallOptions(options),
    );
    let ended = false;
    call.on("status", () => {
      ended = true;
    });
    // grpc-js emits 'error' for a failed status even after the consumer has gone (our own
    // cancel below); without a listener that would be an uncaught exception. While iterating,
    // the iterator's own listener delivers the error.
    call.on("error", () => {
      // Delivered through the iterator while iterating; ignored after the consumer left.
    });
    const onAbort = (): void => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const response of call) yield response as MessageShape<DescMessage>;
    } catch (error) {
      throw RpcError.from(error);
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (!ended) call.cancel();
    }
  };
}

function clientStreamingMethod(
  client: Client,
  method: DescMethod,
): ClientStreamingClientMethod<DescMessage, DescMessage> {
  const path = `/${method.parent.typeName}/${method.name}`;
  const serialize = (value: MessageShape<DescMessage>): Buffer =>
    toBuffer(toBinary(method.input, value));
  const deserialize = (bytes: Buffer): MessageShape<DescMessage> =>
    fromBinary(method.output, bytes);
  return (requests, options = {}) =>
    new Promise((resolve, reject) => {
      const { signal } = options;
      if (signal?.aborted === true) {
        reject(cancelledBeforeStart(signal));
        return;
      }
      let ended = false;
      let sourceError: { readonly error: unknown } | undefined;
      const onAbort = (): void => call.cancel();
      const call = client.makeClientStreamRequest(
        path,
        serialize,
        deserialize,
        requestMetadata(options),
        grpcCallOptions(options),
        (error, response) => {
          ended = true;
          signal?.removeEventListener("abort", onAbort);
          if (sourceError !== undefined) {
            reject(
              new RpcError(status.CANCELLED, "the request stream failed", {
                cause: sourceError.error,
              }),
            );
          } else if (error !== null) reject(RpcError.from(error));
          else if (response === undefined) reject(new RpcError(status.INTERNAL, "no response"));
          else resolve(response);
        },
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      // A write the call can no longer take may surface as an 'error' on the stream; the call's
      // outcome always comes through the callback above, and an unheard 'error' would crash.
      call.on("error", () => {});
      // The requests are written beside the call. A source that throws cancels it rather than
      // half-closing (the server must not see a cut stream as complete), and the call then
      // rejects with that error as its cause: the caller hears of it, nothing is left floating.
      runInBackground(
        {
          onFailure: (_task, error) => {
            sourceError = { error };
            call.cancel();
          },
        },
        "write the request stream",
        async () => {
          for await (const init of requests) {
            if (ended) return;
            const message = isMessage(init, method.input) ? init : create(method.input, init);
            // Or until the call has ended (status received, closed).
            if (!call.write(message)) await writable(call, ["status", "close"]);
          }
          // An abort cancels the call (onAbort); it must never also look like a complete stream.
          if (!ended && signal?.aborted !== true) call.end();
        },
      );
    });
}

/**
 * A client of `service` at `address` (`127.0.0.1:50051`, `unix:/path`). Throws TypeError for a
 * bidi-streaming method, or one whose local name is `close`.
 */
export function createClient<S extends DescService>(
  service: S,
  address: string,
  credentials: ChannelCredentials,
  options: ClientOptions = {},
): ServiceClient<S> {
  for (const method of service.methods) {
    if (method.localName === "close") {
      throw new TypeError(`${method.parent.typeName}.${method.name} collides with close()`);
    }
    if (method.methodKind === "bidi_streaming") {
      throw new TypeError(
        `${method.parent.typeName}.${method.name}: ${method.methodKind} methods are not supported`,
      );
    }
  }
  const client = new Client(address, credentials, options);
  const methods: Record<string, unknown> = {
    close: () => client.close(),
  };
  for (const method of service.methods) {
    switch (method.methodKind) {
      case "unary":
        methods[method.localName] = unaryMethod(client, method);
        break;
      case "server_streaming":
        methods[method.localName] = serverStreamingMethod(client, method);
        break;
      case "client_streaming":
        methods[method.localName] = clientStreamingMethod(client, method);
        break;
      default:
        // Rejected above, before the channel was created.
        break;
    }
  }
  return methods as ServiceClient<S>;
}
