/**
 * The Connect side of "one handler set, two transports" (DESIGN.md): mounts the very
 * `ServiceHandlers` that the grpc-js adapter serves on a connect-node router, which speaks the
 * Connect protocol (JSON and binary) and gRPC-Web on HTTP/1.1.
 *
 * What the wrapper does per call, mirroring `src/rpc/grpc-adapter.ts`:
 * - builds our `CallContext` from Connect's `HandlerContext`: a signal that aborts while the call
 *   is open (client gone: AbortError; deadline: TimeoutError), request headers as grpc-js
 *   `Metadata` (built on first use, without `authorization`), the deadline and the peer;
 * - turns an `EncodedMessage` answer back into a message (decoded once per encoded object, so a
 *   watch event shared by many watchers is decoded once), since Connect serializes messages
 *   itself and may have to write JSON;
 * - maps anything thrown through the same `ErrorToStatus` as gRPC and sends it as a
 *   `ConnectError` with the same code, message and `google.rpc.ErrorInfo` detail (Connect puts
 *   details in its JSON error body, gRPC-Web in `grpc-status-details-bin`);
 * - reports each call's start and final code to the `CallObserver`;
 * - for client streaming, hands the handler the requests as the grpc-js adapter does: counted
 *   against the same total (REQUEST_TOO_LARGE past it), an undecodable one as INVALID_ARGUMENT,
 *   and a cut upload as an error (the call's abort reason), never as a complete stream.
 */
import {
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type Message,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  type Code,
  ConnectError,
  createContextKey,
  type HandlerContext,
  type ServiceImpl,
} from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";
import { DeployError } from "../core/errors.ts";
import { type Logger, silentLogger } from "../core/logger.ts";
import { ABORTED, AbortableIterator } from "../rpc/abortable-iterator.ts";
import { abortCode, type CallEnd, type CallObserver } from "../rpc/call-observer.ts";
import { decodeStatusDetails, type ErrorToStatus, type RpcStatus } from "../rpc/error-mapping.ts";
import {
  type CallContext,
  type ClientStreamingHandler,
  DEFAULT_MAX_REQUEST_STREAM_BYTES,
  EncodedMessage,
  methodPath,
  type Reply,
  type ServerStreamingHandler,
  type ServiceHandlers,
  type UnaryHandler,
} from "../rpc/service-handlers.ts";

/** The client's address in grpc-js's form (`ipv4:127.0.0.1:53124`), set per request by the server. */
export const peerKey = createContextKey<string>("unknown", { description: "peer address" });

export interface ConnectServiceOptions {
  /** The single error → status mapping, the same function the gRPC server uses. */
  readonly toStatus: ErrorToStatus;
  /** Receives failures of handlers after their call ended (debug). Default: silent. */
  readonly logger?: Logger;
  /** Told when each call starts and ends, with its status code (the metrics hook). */
  readonly observer?: CallObserver | undefined;
  /** Most bytes one client-streaming call may send, all messages added up (as on gRPC). */
  readonly maxRequestStreamBytes?: number | undefined;
}

/** `Any.type_url` is `type.googleapis.com/<full name>`; Connect wants the bare name. */
function typeNameOf(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
}

/**
 * The ConnectError of a status from `ErrorToStatus`: same code (Connect's codes are gRPC's),
 * same message, and the details of its `grpc-status-details-bin` trailer as they are.
 */
export function statusToConnectError(status: RpcStatus): ConnectError {
  const error = new ConnectError(status.details, status.code as number as Code);
  const details = decodeStatusDetails(status.metadata);
  if (details !== undefined) {
    error.details = details.details.map((any) => ({
      type: typeNameOf(any.typeUrl),
      value: any.value,
    }));
  }
  return error;
}

/** How a call ended by its signal looks to Connect: CANCELLED or DEADLINE_EXCEEDED. */
function abortError(signal: AbortSignal): ConnectError {
  const code = abortCode(signal);
  return new ConnectError(
    code === 4 ? "the call's deadline passed" : "the client cancelled the call",
    code as Code,
  );
}

/** Request headers as grpc-js metadata: `-bin` values are base64, `authorization` is left out. */
function metadataOf(headers: Headers): Metadata {
  const metadata = new Metadata();
  headers.forEach((value, key) => {
    if (key === "authorization") return;
    try {
      if (key.endsWith("-bin")) metadata.add(key, Buffer.from(value, "base64"));
      else metadata.add(key, value);
    } catch {
      // A header grpc-js cannot hold as metadata (an illegal key) is left out, as grpc-js would.
    }
  });
  return metadata;
}

function createCallContext(
  ctx: HandlerContext,
  method: DescMethod,
): { readonly context: CallContext; readonly settle: () => void } {
  const controller = new AbortController();
  const timeoutMs = ctx.timeoutMs();
  const deadline = timeoutMs === undefined ? undefined : new Date(Date.now() + timeoutMs);
  const abort = (): void => {
    const reason: unknown = ctx.signal.reason;
    const timedOut =
      (reason instanceof ConnectError && reason.code === 4) ||
      (deadline !== undefined && Date.now() >= deadline.getTime());
    controller.abort(
      timedOut
        ? new DOMException("the call's deadline passed", "TimeoutError")
        : new DOMException("the client cancelled the call", "AbortError"),
    );
  };
  // Connect aborts ctx.signal also once the call has completed; settle() detaches first.
  if (ctx.signal.aborted) abort();
  else ctx.signal.addEventListener("abort", abort, { once: true });
  let metadata: Metadata | undefined;
  const context: CallContext = {
    method,
    signal: controller.signal,
    get metadata() {
      metadata ??= metadataOf(ctx.requestHeader);
      return metadata;
    },
    deadline,
    peer: ctx.values.get(peerKey),
  };
  return { context, settle: () => ctx.signal.removeEventListener("abort", abort) };
}

const unobserved: CallEnd = () => undefined;

/**
 * Turns replies into messages for Connect. An `EncodedMessage` is decoded once and the result
 * kept as long as the encoded object lives (watch events go to every watcher alike).
 */
class ReplyDecoder {
  readonly #decoded = new WeakMap<EncodedMessage, Message>();

  message(
    schema: DescMessage,
    reply: Reply<DescMessage>,
  ): MessageShape<DescMessage> | Reply<DescMessage> {
    if (!(reply instanceof EncodedMessage)) return reply;
    if (reply.schema.typeName !== schema.typeName) {
      throw new TypeError(`an encoded ${reply.schema.typeName} is not a ${schema.typeName}`);
    }
    let message = this.#decoded.get(reply);
    if (message === undefined) {
      message = fromBinary(schema, reply.bytes);
      this.#decoded.set(reply, message);
    }
    return message as MessageShape<DescMessage>;
  }
}

function wrapUnary(
  method: DescMethod,
  handler: UnaryHandler<DescMessage, DescMessage>,
  options: ConnectServiceOptions,
  decoder: ReplyDecoder,
) {
  const logger = options.logger ?? silentLogger;
  const path = methodPath(method);
  return async (request: MessageShape<DescMessage>, ctx: HandlerContext) => {
    const { context, settle } = createCallContext(ctx, method);
    const end = options.observer?.started(method) ?? unobserved;
    let reply: Reply<DescMessage>;
    try {
      reply = await handler(request, context);
    } catch (error) {
      if (context.signal.aborted) {
        end(abortCode(context.signal));
        logger.debug("RPC handler failed after its call ended", { method: path, error });
        throw abortError(context.signal);
      }
      const status = options.toStatus(error, { method: path });
      end(status.code);
      throw statusToConnectError(status);
    } finally {
      settle();
    }
    return finishUnary(method, reply, context, end, options, decoder);
  };
}

/** The message of a unary (or client-streaming) reply, or the error a late reply becomes. */
function finishUnary(
  method: DescMethod,
  reply: Reply<DescMessage>,
  context: CallContext,
  end: CallEnd,
  options: ConnectServiceOptions,
  decoder: ReplyDecoder,
): ReturnType<ReplyDecoder["message"]> {
  if (context.signal.aborted) {
    // A late answer: the client is gone or the deadline passed; it is dropped.
    end(abortCode(context.signal));
    throw abortError(context.signal);
  }
  let message: ReturnType<ReplyDecoder["message"]>;
  try {
    message = decoder.message(method.output, reply);
  } catch (error) {
    const status = options.toStatus(error, { method: methodPath(method) });
    end(status.code);
    throw statusToConnectError(status);
  }
  end(0);
  return message;
}

/**
 * A client stream's requests as the handler contract says (`ClientStreamingHandler`): Connect's
 * own read errors become DeployErrors, a cancel throws the call's abort reason.
 */
async function* readRequests(
  requests: AsyncIterable<MessageShape<DescMessage>>,
  method: DescMethod,
  limit: number,
  signal: AbortSignal,
): AsyncGenerator<MessageShape<DescMessage>, void, undefined> {
  let total = 0;
  try {
    for await (const request of requests) {
      if (signal.aborted) break;
      // Connect hands over decoded messages; their encoded size is what gRPC counts.
      total += toBinary(method.input, request).byteLength;
      if (total > limit) {
        throw new DeployError(
          "REQUEST_TOO_LARGE",
          `the ${method.name} request stream passed its limit of ${limit} bytes`,
          { limit_bytes: String(limit) },
        );
      }
      yield request;
    }
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    if (!(error instanceof ConnectError)) throw error;
    // 3 INVALID_ARGUMENT (undecodable), 8 RESOURCE_EXHAUSTED (one message over 4 MiB).
    throw new DeployError(
      error.code === 8 ? "REQUEST_TOO_LARGE" : "INVALID_ARGUMENT",
      `request stream of ${method.name}: ${error.rawMessage}`,
      {},
      { cause: error },
    );
  }
  if (signal.aborted) throw signal.reason;
}

function wrapClientStreaming(
  method: DescMethod,
  handler: ClientStreamingHandler<DescMessage, DescMessage>,
  options: ConnectServiceOptions,
  decoder: ReplyDecoder,
) {
  const logger = options.logger ?? silentLogger;
  const path = methodPath(method);
  const limit = options.maxRequestStreamBytes ?? DEFAULT_MAX_REQUEST_STREAM_BYTES;
  return async (requests: AsyncIterable<MessageShape<DescMessage>>, ctx: HandlerContext) => {
    const { context, settle } = createCallContext(ctx, method);
    const end = options.observer?.started(method) ?? unobserved;
    let reply: Reply<DescMessage>;
    try {
      reply = await handler(readRequests(requests, method, limit, context.signal), context);
    } catch (error) {
      if (context.signal.aborted) {
        end(abortCode(context.signal));
        logger.debug("RPC handler failed after its call ended", { method: path, error });
        throw abortError(context.signal);
      }
      const status = options.toStatus(error, { method: path });
      end(status.code);
      throw statusToConnectError(status);
    } finally {
      settle();
    }
    return finishUnary(method, reply, context, end, options, decoder);
  };
}

function wrapServerStreaming(
  method: DescMethod,
  handler: ServerStreamingHandler<DescMessage, DescMessage>,
  options: ConnectServiceOptions,
  decoder: ReplyDecoder,
) {
  const logger = options.logger ?? silentLogger;
  const path = methodPath(method);
  const logLate = (error: unknown): void =>
    logger.debug("RPC handler failed after its call ended", { method: path, error });
  return async function* (request: MessageShape<DescMessage>, ctx: HandlerContext) {
    const { context, settle } = createCallContext(ctx, method);
    const { signal } = context;
    const end = options.observer?.started(method) ?? unobserved;
    let code: number | undefined;
    let finished = false;
    let iterator: AbortableIterator<Reply<DescMessage>> | undefined;
    try {
      iterator = new AbortableIterator(
        handler(request, context)[Symbol.asyncIterator](),
        signal,
        logLate,
      );
      for (;;) {
        const result = await iterator.next();
        if (result === ABORTED) {
          code = abortCode(signal);
          throw abortError(signal);
        }
        if (result.done === true) {
          finished = true;
          code = 0;
          return;
        }
        yield decoder.message(method.output, result.value);
      }
    } catch (error) {
      if (code !== undefined) throw error; // our own abortError from above
      if (signal.aborted) {
        code = abortCode(signal);
        logLate(error);
        throw abortError(signal);
      }
      const status = options.toStatus(error, { method: path });
      code = status.code;
      throw statusToConnectError(status);
    } finally {
      // No code yet: Connect stopped pulling (the client went away) while we were yielding.
      end(code ?? abortCode(signal));
      settle();
      iterator?.close(finished);
    }
  };
}

/**
 * A Connect service implementation of `service` running `handlers` (the same objects the grpc-js
 * server mounts). Pass it to `router.service(service, ...)`. Throws TypeError when a handler is
 * missing or a method is client- or bidi-streaming, like the grpc-js adapter.
 */
export function createConnectService<S extends DescService>(
  service: S,
  handlers: ServiceHandlers<S>,
  options: ConnectServiceOptions,
): ServiceImpl<S> {
  const decoder = new ReplyDecoder();
  const byName = handlers as unknown as Readonly<Record<string, unknown>>;
  const implementation: Record<string, unknown> = {};
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
          decoder,
        );
        break;
      case "server_streaming":
        implementation[method.localName] = wrapServerStreaming(
          method,
          handler as ServerStreamingHandler<DescMessage, DescMessage>,
          options,
          decoder,
        );
        break;
      case "client_streaming":
        implementation[method.localName] = wrapClientStreaming(
          method,
          handler as ClientStreamingHandler<DescMessage, DescMessage>,
          options,
          decoder,
        );
        break;
      default:
        throw new TypeError(
          `${method.parent.typeName}.${method.name}: ${method.methodKind} methods are not supported`,
        );
    }
  }
  return implementation as ServiceImpl<S>;
}
