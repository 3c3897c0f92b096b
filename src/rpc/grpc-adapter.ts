/**
 * The one adapter between protobuf-es service descriptors and grpc-js, generic over any
 * `DescService`: the grpc-js service definition (paths and protobuf-es serializers), typed
 * server handlers wrapped so that nothing they throw can escape into grpc-js, and (in
 * `grpc-client.ts`) the typed client.
 *
 * Server handlers receive a `CallContext` whose `signal` aborts when the client cancels or the
 * deadline passes. Unary handlers return (a promise of) the response; server-streaming handlers
 * return an `AsyncIterable` of responses, pulled only as fast as the client reads (HTTP/2 flow
 * control → grpc-js `write()` returning false → wait for `drain`); client-streaming handlers
 * read an `AsyncIterable` of requests, delivered only as fast as they read it (grpc-js reads the
 * next message from HTTP/2 when the stream is read), bounded in total bytes, and return the
 * response.
 */

import { setImmediate as nextTurn } from "node:timers/promises";
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
import type * as grpc from "@grpc/grpc-js";
import { DeployError } from "../core/errors.ts";
import { type Logger, silentLogger } from "../core/logger.ts";
import { abortCode, type CallEnd, type CallObserver } from "./call-observer.ts";
import type { ErrorToStatus } from "./error-mapping.ts";
import type { RpcSignature } from "./rpc-signature.ts";

export {
  type ClientCallOptions,
  createClient,
  RpcError,
  type ServiceClient,
} from "./grpc-client.ts";

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

export interface ServiceImplementationOptions {
  /** The single error → status mapping (`createErrorToStatus` in production). */
  readonly toStatus: ErrorToStatus;
  /**
   * Receives what cannot become a status: failures after the call was cancelled (debug) and
   * errors thrown by grpc-js itself while responding (error). Default: silent.
   */
  readonly logger?: Logger;
  /**
   * Most bytes (encoded messages added up) one client-streaming call may send; the handler's
   * iterator throws REQUEST_TOO_LARGE past it, so no client can stream without end. Default
   * {@link DEFAULT_MAX_REQUEST_STREAM_BYTES}.
   */
  readonly maxRequestStreamBytes?: number;
  /** Told when each call starts and ends, with its status code (the metrics hook). */
  readonly observer?: CallObserver;
}

/** Default bound of a client stream's total bytes: 4 MiB, the size of one message. */
export const DEFAULT_MAX_REQUEST_STREAM_BYTES = 4 * 1024 * 1024;

const unobserved: CallEnd = () => undefined;

/** The gRPC path of a method: `/atoll.deployment.v1.DeploymentService/Deploy`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/**
 * A request whose bytes did not decode. grpc-js answers a throwing deserializer with INTERNAL
 * before any handler runs; decoding to this marker instead lets the wrapper answer
 * INVALID_ARGUMENT through the error mapping.
 */
class MalformedRequest {
  readonly cause: unknown;
  constructor(cause: unknown) {
    this.cause = cause;
  }
}

function decodeRequest(schema: DescMessage, bytes: Buffer): unknown {
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    return new MalformedRequest(error);
  }
}

/** One message of a request stream with its encoded size, which the stream's bound counts. */
class StreamedRequest {
  /** The decoded message, or a MalformedRequest. */
  readonly value: unknown;
  readonly byteLength: number;
  constructor(value: unknown, byteLength: number) {
    this.value = value;
    this.byteLength = byteLength;
  }
}

function malformedRequestError(method: DescMethod, request: MalformedRequest): DeployError {
  const why = request.cause instanceof Error ? `: ${request.cause.message}` : "";
  return new DeployError(
    "INVALID_ARGUMENT",
    `request is not a valid ${method.input.typeName}${why}`,
    {},
    { cause: request.cause },
  );
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Serializes a response; bytes pass through, so a wrapper can serialize inside its own error
 * handling (a bad response becomes a logged INTERNAL, not grpc-js's anonymous one).
 */
function encodeResponse(schema: DescMessage, value: unknown): Buffer {
  if (value instanceof Uint8Array) return toBuffer(value);
  return toBuffer(toBinary(schema, value as MessageShape<DescMessage>));
}

function encodeInit(schema: DescMessage, init: Reply<DescMessage>): Buffer {
  if (init instanceof EncodedMessage) {
    if (init.schema.typeName !== schema.typeName) {
      throw new TypeError(`an encoded ${init.schema.typeName} is not a ${schema.typeName}`);
    }
    return toBuffer(init.bytes);
  }
  const message = isMessage(init, schema) ? init : create(schema, init);
  return toBuffer(toBinary(schema, message));
}

/**
 * The grpc-js service definition of `service`, keyed by method local name. Requests decode with
 * `fromBinary`; undecodable bytes reach the wrapped handler as INVALID_ARGUMENT. Responses
 * encode with `toBinary` (or pass through when already bytes).
 */
export function createServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: methodPath(method),
      originalName: method.name,
      requestStream:
        method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream:
        method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (value) => encodeInit(method.input, value as MessageInitShape<DescMessage>),
      requestDeserialize:
        method.methodKind === "client_streaming"
          ? (bytes) => new StreamedRequest(decodeRequest(method.input, bytes), bytes.length)
          : (bytes) => decodeRequest(method.input, bytes),
      responseSerialize: (value) => encodeResponse(method.output, value),
      responseDeserialize: (bytes) => fromBinary(method.output, bytes),
    };
  }
  return definition;
}

/** What every kind of grpc-js server call offers (grpc-js does not export its own name for it). */
interface ServerCall {
  readonly cancelled: boolean;
  readonly metadata: grpc.Metadata;
  getPeer(): string;
  getDeadline(): ReturnType<grpc.ServerUnaryCall<unknown, unknown>["getDeadline"]>;
  once(event: "cancelled", listener: () => void): unknown;
  off(event: "cancelled", listener: () => void): unknown;
}

/**
 * Builds the context of one call. Its signal aborts on grpc-js's `cancelled` event (client
 * cancel, deadline, broken connection) until `settle()`: grpc-js also emits `cancelled` when the
 * stream closes after a normal finish, which must not look like a cancel to the handler.
 */
function createCallContext(
  call: ServerCall,
  method: DescMethod,
): { readonly context: CallContext; readonly settle: () => void } {
  const controller = new AbortController();
  const rawDeadline = call.getDeadline();
  const deadline =
    rawDeadline instanceof Date
      ? rawDeadline
      : Number.isFinite(rawDeadline)
        ? new Date(rawDeadline)
        : undefined;
  const abort = (): void => {
    // grpc-js reports a passed deadline and a client cancel alike; tell them apart for handlers.
    const timedOut = deadline !== undefined && Date.now() >= deadline.getTime();
    controller.abort(
      timedOut
        ? new DOMException("the call's deadline passed", "TimeoutError")
        : new DOMException("the client cancelled the call", "AbortError"),
    );
  };
  if (call.cancelled) abort();
  else call.once("cancelled", abort);
  const context: CallContext = {
    method,
    signal: controller.signal,
    metadata: call.metadata,
    deadline,
    peer: call.getPeer(),
  };
  return { context, settle: () => call.off("cancelled", abort) };
}

/**
 * The grpc-js implementation of `service`: every handler wrapped so a thrown error or rejected
 * promise becomes `toStatus(error)`, a result arriving after cancellation is dropped, and
 * nothing escapes into grpc-js. Throws TypeError when a handler is missing or a method is
 * bidi-streaming.
 */
export function createServiceImplementation<S extends DescService>(
  service: S,
  handlers: ServiceHandlers<S>,
  options: ServiceImplementationOptions,
): grpc.UntypedServiceImplementation {
  const implementation: grpc.UntypedServiceImplementation = {};
  const byName = handlers as unknown as Readonly<Record<string, unknown>>;
  for (const method of service.methods) {
    const handler = byName[method.localName];
    if (typeof handler !== "function") {
      throw new TypeError(`no handler for ${method.parent.typeName}.${method.name}`);
    }
    switch (method.methodKind) {
      case "unary":
        implementation[method.localName] = wrapUnary(
          method,
          handler as UnaryHandler<DescMessage, DescMessage>,
          options,
        );
        break;
      case "server_streaming":
        implementation[method.localName] = wrapServerStreaming(
          method,
          handler as ServerStreamingHandler<DescMessage, DescMessage>,
          options,
        );
        break;
      case "client_streaming":
        implementation[method.localName] = wrapClientStreaming(
          method,
          handler as ClientStreamingHandler<DescMessage, DescMessage>,
          options,
        );
        break;
      default:
        throw new TypeError(
          `${method.parent.typeName}.${method.name}: ${method.methodKind} methods are not supported`,
        );
    }
  }
  return implementation;
}

/** `server.addService` with the definition and wrapped implementation of `service`. */
export function addService<S extends DescService>(
  server: grpc.Server,
  service: S,
  handlers: ServiceHandlers<S>,
  options: ServiceImplementationOptions,
): void {
  server.addService(
    createServiceDefinition(service),
    createServiceImplementation(service, handlers, options),
  );
}

function logLate(logger: Logger, method: DescMethod, error: unknown): void {
  logger.debug("RPC handler failed after its call ended", { method: methodPath(method), error });
}

function wrapUnary(
  method: DescMethod,
  handler: UnaryHandler<DescMessage, DescMessage>,
  options: ServiceImplementationOptions,
): grpc.handleUnaryCall<unknown, unknown> {
  const logger = options.logger ?? silentLogger;
  const path = methodPath(method);
  return (call, callback) => {
    const { context, settle } = createCallContext(call, method);
    const end = options.observer?.started(method) ?? unobserved;
    const run = async (): Promise<Buffer> => {
      const request = call.request;
      if (request instanceof MalformedRequest) throw malformedRequestError(method, request);
      const response = await handler(request as MessageShape<DescMessage>, context);
      return encodeInit(method.output, response);
    };
    run()
      .then(
        (bytes) => {
          // After a cancel grpc-js has already ended the call; a late answer is just dropped.
          if (context.signal.aborted) return end(abortCode(context.signal));
          settle();
          end(0);
          callback(null, bytes);
        },
        (error: unknown) => {
          if (context.signal.aborted) {
            end(abortCode(context.signal));
            logLate(logger, method, error);
            return;
          }
          settle();
          const status = options.toStatus(error, { method: path });
          end(status.code);
          callback(status, null);
        },
      )
      .catch((error: unknown) => {
        logger.error("responding to an RPC failed", { method: path, error });
      });
  };
}

/** What {@link AbortableIterator.next} resolves with once the call's signal has aborted. */
export const ABORTED = Symbol("aborted");

/**
 * Pulls a handler's iterator, each result racing the call's cancellation: `next()` resolves with
 * the iterator's next result, or ABORTED as soon as the signal aborts. One abort listener serves
 * the whole stream (EventTarget listeners are costly to add and remove once per message).
 * Shared by both transports' streaming wrappers.
 */
export class AbortableIterator<T> {
  readonly #iterator: AsyncIterator<T>;
  readonly #signal: AbortSignal;
  readonly #onLateError: (error: unknown) => void;
  #onAbort: (() => void) | undefined;
  readonly #abort = (): void => this.#onAbort?.();

  constructor(
    iterator: AsyncIterator<T>,
    signal: AbortSignal,
    onLateError: (error: unknown) => void,
  ) {
    this.#iterator = iterator;
    this.#signal = signal;
    this.#onLateError = onLateError;
    signal.addEventListener("abort", this.#abort, { once: true });
  }

  next(): Promise<IteratorResult<T> | typeof ABORTED> {
    if (this.#signal.aborted) return Promise.resolve(ABORTED);
    const next = this.#iterator.next();
    return new Promise((resolve, reject) => {
      this.#onAbort = () => {
        // The pending next() may still settle; its outcome no longer matters but must not be
        // an unhandled rejection.
        next.catch(this.#onLateError);
        resolve(ABORTED);
      };
      next.then(
        (result) => {
          this.#onAbort = undefined;
          resolve(result);
        },
        (error: unknown) => {
          this.#onAbort = undefined;
          reject(error);
        },
      );
    });
  }

  /** Removes the abort listener; `return()`s the iterator unless it finished by itself. */
  close(finished: boolean): void {
    this.#signal.removeEventListener("abort", this.#abort);
    // Not awaited: a handler blocked in an await only sees it at its next yield, and that must
    // not hold up the status.
    if (!finished) this.#iterator.return?.().catch(this.#onLateError);
  }
}

/** Resolves when the stream can take more writes, closes, or the call is cancelled. */
function writable(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal) {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      call.off("drain", done);
      call.off("close", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.on("drain", done);
    call.on("close", done);
    signal.addEventListener("abort", done);
  });
}

function wrapServerStreaming(
  method: DescMethod,
  handler: ServerStreamingHandler<DescMessage, DescMessage>,
  options: ServiceImplementationOptions,
): grpc.handleServerStreamingCall<unknown, unknown> {
  const logger = options.logger ?? silentLogger;
  const path = methodPath(method);
  return (call) => {
    const { context, settle } = createCallContext(call, method);
    const end = options.observer?.started(method) ?? unobserved;
    const { signal } = context;
    const stopped = (): boolean => signal.aborted || call.destroyed;
    const run = async (): Promise<void> => {
      const request = call.request;
      if (request instanceof MalformedRequest) throw malformedRequestError(method, request);
      const iterator = new AbortableIterator(
        handler(request as MessageShape<DescMessage>, context)[Symbol.asyncIterator](),
        signal,
        (error) => logLate(logger, method, error),
      );
      let finished = false;
      try {
        while (!stopped()) {
          const result = await iterator.next();
          if (result === ABORTED) break;
          if (result.done === true) {
            finished = true;
            break;
          }
          const bytes = encodeInit(method.output, result.value);
          if (stopped()) break;
          // write() returns false once grpc-js buffers a high-water mark of messages the
          // client has not taken yet: stop pulling from the handler until it drains.
          if (!call.write(bytes)) await writable(call, signal);
        }
      } finally {
        // Tell the handler to clean up when we stop early.
        iterator.close(finished);
      }
    };
    run()
      .then(
        () => {
          if (stopped()) return end(abortCode(signal));
          settle();
          end(0);
          call.end();
        },
        (error: unknown) => {
          if (stopped()) {
            end(abortCode(signal));
            logLate(logger, method, error);
            return;
          }
          settle();
          const status = options.toStatus(error, { method: path });
          end(status.code);
          // grpc-js's own 'error' listener turns this into the trailers and ends the call.
          call.emit("error", status);
        },
      )
      .catch((error: unknown) => {
        logger.error("responding to an RPC failed", { method: path, error });
      });
  };
}

/**
 * Turns of the event loop to wait, after a request stream ended, for a cancel that caused the
 * end. Node's http2 ends a stream's readable side when the peer resets it (RST_STREAM), and
 * grpc-js reports that end as a half-close before it reports the cancel, two turns later
 * (measured with Node 24 and grpc-js 1.14); waiting a few turns lets the handler see a cut
 * stream as cut. Handlers must still not trust an end alone: InstallAgent checks the checksum.
 */
const CANCEL_AFTER_END_TURNS = 4;

/**
 * The requests of a client-streaming call, counted against `limit` as they arrive. grpc-js
 * destroys the stream when the client cancels, which ends a `for await` with a premature-close
 * error; the call's abort reason is thrown instead, so the handler sees why.
 */
async function* readRequestStream(
  call: grpc.ServerReadableStream<unknown, unknown>,
  method: DescMethod,
  limit: number,
  signal: AbortSignal,
): AsyncGenerator<MessageShape<DescMessage>, void, undefined> {
  let total = 0;
  try {
    for await (const item of call) {
      if (signal.aborted) break;
      const request = item as StreamedRequest;
      total += request.byteLength;
      if (total > limit) {
        throw new DeployError(
          "REQUEST_TOO_LARGE",
          `the ${method.name} request stream passed its limit of ${limit} bytes`,
          { limit_bytes: String(limit) },
        );
      }
      if (request.value instanceof MalformedRequest) {
        throw malformedRequestError(method, request.value);
      }
      yield request.value as MessageShape<DescMessage>;
    }
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw error;
  }
  for (let turn = 0; turn < CANCEL_AFTER_END_TURNS && !signal.aborted; turn++) {
    await nextTurn();
  }
  if (signal.aborted) throw signal.reason;
}

function wrapClientStreaming(
  method: DescMethod,
  handler: ClientStreamingHandler<DescMessage, DescMessage>,
  options: ServiceImplementationOptions,
): grpc.handleClientStreamingCall<unknown, unknown> {
  const logger = options.logger ?? silentLogger;
  const path = methodPath(method);
  const limit = options.maxRequestStreamBytes ?? DEFAULT_MAX_REQUEST_STREAM_BYTES;
  return (call, callback) => {
    const { context, settle } = createCallContext(call, method);
    const end = options.observer?.started(method) ?? unobserved;
    const run = async (): Promise<Buffer> => {
      const requests = readRequestStream(call, method, limit, context.signal);
      const response = await handler(requests, context);
      return encodeInit(method.output, response);
    };
    run()
      .then(
        (bytes) => {
          if (context.signal.aborted) return end(abortCode(context.signal));
          settle();
          end(0);
          callback(null, bytes);
        },
        (error: unknown) => {
          if (context.signal.aborted) {
            end(abortCode(context.signal));
            logLate(logger, method, error);
            return;
          }
          settle();
          const status = options.toStatus(error, { method: path });
          end(status.code);
          callback(status, null);
        },
      )
      .catch((error: unknown) => {
        logger.error("responding to an RPC failed", { method: path, error });
      });
  };
}
