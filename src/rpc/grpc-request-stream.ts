/**
 * The requests of a grpc-js client-streaming call as the handler contract says
 * (`ClientStreamingHandler`): counted against the stream's byte bound, an undecodable one as
 * INVALID_ARGUMENT, and a cut stream as the call's abort reason, never as a complete one.
 */
import { setImmediate as nextTurn } from "node:timers/promises";
import type { DescMessage, DescMethod, MessageShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { MalformedRequest, malformedRequestError, type StreamedRequest } from "./grpc-codec.ts";
import { requestStreamTooLarge } from "./service-handlers.ts";

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
export async function* readRequestStream(
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
      if (total > limit) throw requestStreamTooLarge(method, limit);
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
