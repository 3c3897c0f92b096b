/**
 * The one adapter between protobuf-es service descriptors and grpc-js, generic over any
 * `DescService`: it mounts the handlers of `service-handlers.ts`, each wrapped so that nothing
 * it throws can escape into grpc-js, with the service definition of `grpc-codec.ts`; the typed
 * client is `grpc-client.ts`.
 *
 * Server-streaming responses are pulled only as fast as the client reads (HTTP/2 flow control →
 * grpc-js `write()` returning false → wait for `drain`); client-streaming requests are delivered
 * only as fast as the handler reads them (`grpc-request-stream.ts`: grpc-js reads the next
 * message from HTTP/2 when the stream is read), bounded in total bytes.
 */
import type { DescMessage, DescMethod, DescService, MessageShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { type Logger, silentLogger } from "../core/logger.ts";
import { ABORTED, AbortableIterator } from "./abortable-iterator.ts";
import { abortCode, type CallEnd, type CallObserver } from "./call-observer.ts";
import type { ErrorToStatus } from "./error-mapping.ts";
import { createCallContext } from "./grpc-call-context.ts";
import {
  createServiceDefinition,
  encodeReply,
  MalformedRequest,
  malformedRequestError,
} from "./grpc-codec.ts";
import { readRequestStream } from "./grpc-request-stream.ts";
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
} from "./service-handlers.ts";
import { writable } from "./stream-writable.ts";

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

const unobserved: CallEnd = () => undefined;

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
  return wrapHandlers<S, grpc.UntypedHandleCall>(service, handlers, {
    unary: (method, handler) => wrapUnary(method, handler, options),
    serverStreaming: (method, handler) => wrapServerStreaming(method, handler, options),
    clientStreaming: (method, handler) => wrapClientStreaming(method, handler, options),
  });
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

/**
 * Serves a call answered by one response (unary, client streaming): `reply` runs the handler;
 * its answer, or its error mapped to a status, goes to grpc-js's callback unless the call was
 * cancelled meanwhile (then it is dropped, and an error only logged).
 */
function answerOnce(
  call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown>,
  callback: grpc.sendUnaryData<unknown>,
  method: DescMethod,
  options: ServiceImplementationOptions,
  reply: (context: CallContext) => Promise<Reply<DescMessage>>,
): void {
  const logger = options.logger ?? silentLogger;
  const { context, settle } = createCallContext(call, method);
  const end = options.observer?.started(method) ?? unobserved;
  const run = async (): Promise<Buffer> => encodeReply(method.output, await reply(context));
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
        const status = options.toStatus(error, { method: methodPath(method) });
        end(status.code);
        callback(status, null);
      },
    )
    .catch((error: unknown) => {
      logger.error("responding to an RPC failed", { method: methodPath(method), error });
    });
}

function wrapUnary(
  method: DescMethod,
  handler: UnaryHandler<DescMessage, DescMessage>,
  options: ServiceImplementationOptions,
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) =>
    answerOnce(call, callback, method, options, async (context) => {
      const request = call.request;
      if (request instanceof MalformedRequest) throw malformedRequestError(method, request);
      return handler(request as MessageShape<DescMessage>, context);
    });
}

function wrapClientStreaming(
  method: DescMethod,
  handler: ClientStreamingHandler<DescMessage, DescMessage>,
  options: ServiceImplementationOptions,
): grpc.handleClientStreamingCall<unknown, unknown> {
  const limit = options.maxRequestStreamBytes ?? DEFAULT_MAX_REQUEST_STREAM_BYTES;
  return (call, callback) =>
    answerOnce(call, callback, method, options, (context) =>
      handler(readRequestStream(call, method, limit, context.signal), context),
    );
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
          const bytes = encodeReply(method.output, result.value);
          if (stopped()) break;
          // write() returns false once grpc-js buffers a high-water mark of messages the
          // client has not taken yet: stop pulling from the handler until it drains.
          if (!call.write(bytes)) await writable(call, ["close"], signal);
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
