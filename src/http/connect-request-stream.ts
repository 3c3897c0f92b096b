/**
 * The requests of a client-streaming call on the HTTP listener as the handler contract says
 * (`ClientStreamingHandler`), as the grpc-js adapter hands them over: counted against the same
 * total (REQUEST_TOO_LARGE past it), an undecodable one as INVALID_ARGUMENT, and a cut upload as
 * the call's abort reason, never as a complete stream.
 */
import { type DescMessage, type DescMethod, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { DeployError } from "../core/errors.ts";
import { requestStreamTooLarge } from "../rpc/service-handlers.ts";

/**
 * A client stream's requests as the handler contract says (`ClientStreamingHandler`): Connect's
 * own read errors become DeployErrors, a cancel throws the call's abort reason.
 */
export async function* readRequests(
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
      if (total > limit) throw requestStreamTooLarge(method, limit);
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
