/**
 * The `CallContext` of one call on the HTTP listener, built from Connect's `HandlerContext`: a
 * signal that aborts while the call is open (client gone: AbortError; deadline: TimeoutError),
 * request headers as grpc-js `Metadata` (built on first use, without `authorization`), the
 * deadline and the peer.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";
import { type CallContext, callAbortReason } from "../rpc/service-handlers.ts";

/** The client's address in grpc-js's form (`ipv4:127.0.0.1:53124`), set per request by the server. */
export const peerKey = createContextKey<string>("unknown", { description: "peer address" });

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

/**
 * Builds the context of one call. Connect aborts `ctx.signal` also once the call has completed;
 * `settle()` detaches from it first, so a finished call never looks cancelled to its handler.
 */
export function createCallContext(
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
    controller.abort(callAbortReason(timedOut));
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
