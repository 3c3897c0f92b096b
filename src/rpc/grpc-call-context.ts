/**
 * The `CallContext` of one grpc-js server call: its signal, metadata, deadline and peer.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { type CallContext, callAbortReason } from "./service-handlers.ts";

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
export function createCallContext(
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
    controller.abort(callAbortReason(timedOut));
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
