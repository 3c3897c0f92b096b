/**
 * The Connect side of "one handler set, two transports" (DESIGN.md): mounts the very
 * `ServiceHandlers` that the grpc-js adapter serves on a connect-node router, which speaks the
 * Connect protocol (JSON and binary) and gRPC-Web on HTTP/1.1.
 *
 * What the wrapper does per call, mirroring `src/rpc/grpc-adapter.ts`:
 * - builds our `CallContext` from Connect's `HandlerContext` (`connect-call-context.ts`);
 * - turns an `EncodedMessage` answer back into a message (`connect-replies.ts`: decoded once per
 *   encoded object, so a watch event shared by many watchers is decoded once), since Connect
 *   serializes messages itself and may have to write JSON;
 * - maps anything thrown through the same `ErrorToStatus` as gRPC and sends it as a
 *   `ConnectError` with the same code, message and `google.rpc.ErrorInfo` detail
 *   (`connect-errors.ts`; Connect puts details in its JSON error body, gRPC-Web in
 *   `grpc-status-details-bin`);
 * - reports each call's start and final code to the `CallObserver`;
 * - for client streaming, hands the handler the requests as the grpc-js adapter does
 *   (`connect-request-stream.ts`).
 */
import type { DescMessage, DescMethod, DescService, MessageShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { type Logger, silentLogger } from "../core/logger.ts";
import { ABORTED, AbortableIterator } from "../rpc/abortable-iterator.ts";
import { abortCode, type CallEnd, type CallObserver } from "../rpc/call-observer.ts";
import type { ErrorToStatus } from "../rpc/error-mapping.ts";
import {
  type CallContext,
  type ClientStreamingHandler,
  DEFAULT_MAX_REQUEST_STREAM_BYTES,
  methodPath,
  type Reply,
  type ServerStreamingHandler,
  type ServiceHandlers,
  type UnaryHandler,
  wrapHandlers,
} from "../rpc/service-handlers.ts";
import { createCallContext } from "./connect-call-context.ts";
import { abortError, statusToConnectError } from "./connect-errors.ts";
import { ReplyDecoder } from "./connect-replies.ts";
import { readRequests } from "./connect-request-stream.ts";

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

const unobserved: CallEnd = () => undefined;

function logLate(logger: Logger, method: DescMethod, error: unknown): void {
  logger.debug("RPC handler failed after its call ended", { method: methodPath(method), error });
}

/**
 * Serves a call answered by one response (unary, client streaming): `reply` runs the handler.
 * Its answer becomes the message Connect sends, its error the mapped status; after the call
 * was cancelled or its deadline passed, either becomes CANCELLED / DEADLINE_EXCEEDED (a late
 * answer is dropped, a late error only logged).
 */
async function answerOnce(
  method: DescMethod,
  ctx: HandlerContext,
  options: ConnectServiceOptions,
  decoder: ReplyDecoder,
  reply: (context: CallContext) => Promise<Reply<DescMessage>>,
): Promise<ReturnType<ReplyDecoder["message"]>> {
  const { context, settle } = createCallContext(ctx, method);
  const end = options.observer?.started(method) ?? unobserved;
  let answer: Reply<DescMessage>;
  try {
    answer = await reply(context);
  } catch (error) {
    if (context.signal.aborted) {
      end(abortCode(context.signal));
      logLate(options.logger ?? silentLogger, method, error);
      throw abortError(context.signal);
    }
    const status = options.toStatus(error, { method: methodPath(method) });
    end(status.code);
    throw statusToConnectError(status);
  } finally {
    settle();
  }
  if (context.signal.aborted) {
    // A late answer: the client is gone or the deadline passed; it is dropped.
    end(abortCode(context.signal));
    throw abortError(context.signal);
  }
  let message: ReturnType<ReplyDecoder["message"]>;
  try {
    message = decoder.message(method.output, answer);
  } catch (error) {
    const status = options.toStatus(error, { method: methodPath(method) });
    end(status.code);
    throw statusToConnectError(status);
  }
  end(0);
  return message;
}

function wrapUnary(
  method: DescMethod,
  handler: UnaryHandler<DescMessage, DescMessage>,
  options: ConnectServiceOptions,
  decoder: ReplyDecoder,
) {
  return (request: MessageShape<DescMessage>, ctx: HandlerContext) =>
    answerOnce(method, ctx, options, decoder, (context) => handler(request, context));
}

function wrapClientStreaming(
  method: DescMethod,
  handler: ClientStreamingHandler<DescMessage, DescMessage>,
  options: ConnectServiceOptions,
  decoder: ReplyDecoder,
) {
  const limit = options.maxRequestStreamBytes ?? DEFAULT_MAX_REQUEST_STREAM_BYTES;
  return (requests: AsyncIterable<MessageShape<DescMessage>>, ctx: HandlerContext) =>
    answerOnce(method, ctx, options, decoder, (context) =>
      handler(readRequests(requests, method, limit, context.signal), context),
    );
}

function wrapServerStreaming(
  method: DescMethod,
  handler: ServerStreamingHandler<DescMessage, DescMessage>,
  options: ConnectServiceOptions,
  decoder: ReplyDecoder,
) {
  const logger = options.logger ?? silentLogger;
  const path = methodPath(method);
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
        (error) => logLate(logger, method, error),
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
        logLate(logger, method, error);
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
 * missing or a method is bidi-streaming, like the grpc-js adapter.
 */
export function createConnectService<S extends DescService>(
  service: S,
  handlers: ServiceHandlers<S>,
  options: ConnectServiceOptions,
): ServiceImpl<S> {
  const decoder = new ReplyDecoder();
  return wrapHandlers<S, unknown>(service, handlers, {
    unary: (method, handler) => wrapUnary(method, handler, options, decoder),
    serverStreaming: (method, handler) => wrapServerStreaming(method, handler, options, decoder),
    clientStreaming: (method, handler) => wrapClientStreaming(method, handler, options, decoder),
  }) as ServiceImpl<S>;
}
