/**
 * Statuses as Connect errors: what the one error mapping (`ErrorToStatus`) and a call ended by
 * its signal look like on the HTTP listener, with the same code, message and details as on gRPC.
 */
import { type Code, ConnectError } from "@connectrpc/connect";
import { abortCode } from "../rpc/call-observer.ts";
import { decodeStatusDetails, type RpcStatus } from "../rpc/error-mapping.ts";

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
export function abortError(signal: AbortSignal): ConnectError {
  const code = abortCode(signal);
  return new ConnectError(
    code === 4 ? "the call's deadline passed" : "the client cancelled the call",
    code as Code,
  );
}
