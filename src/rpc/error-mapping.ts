/**
 * The single mapping from errors to gRPC status (SPEC §6). A `DeployError` becomes its status
 * code, its message, and a `grpc-status-details-bin` trailer holding a `google.rpc.Status` with
 * one `google.rpc.ErrorInfo` detail (`reason` = the DeployError code, `domain` = "atoll.deploy",
 * `metadata` = the error's metadata). Anything else becomes INTERNAL with a generic message and
 * is logged with its cause; internals never reach the client.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyIs, anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import { Metadata, status } from "@grpc/grpc-js";
import { type ErrorInfo, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { type Status, StatusSchema } from "../../gen/google/rpc/status_pb.ts";
import { DeployError, type DeployErrorCode } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";

/** `ErrorInfo.domain` of every error this server sends. */
export const ERROR_DOMAIN = "atoll.deploy";

/** The trailer carrying the serialized `google.rpc.Status` (the gRPC "richer error model"). */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/** The message of every INTERNAL status: the cause stays in the server log. */
export const INTERNAL_ERROR_MESSAGE = "internal error";

/** A gRPC status as grpc-js sends it: code, message (`details`) and trailers. */
export interface RpcStatus {
  readonly code: status;
  readonly details: string;
  readonly metadata: Metadata;
}

/** Turns anything a handler threw into the status sent to the client. */
export type ErrorToStatus = (error: unknown, call?: { readonly method: string }) => RpcStatus;

const GRPC_CODE: Readonly<Record<DeployErrorCode, status>> = {
  AGENT_NOT_FOUND: status.NOT_FOUND,
  AGENT_CONFIG_INVALID: status.FAILED_PRECONDITION,
  MAX_AGENTS_REACHED: status.RESOURCE_EXHAUSTED,
  NO_FREE_PORT: status.RESOURCE_EXHAUSTED,
  PORT_UNAVAILABLE: status.FAILED_PRECONDITION,
  AGENT_START_FAILED: status.FAILED_PRECONDITION,
  AGENT_EXITED_DURING_START: status.FAILED_PRECONDITION,
  AGENT_START_TIMEOUT: status.DEADLINE_EXCEEDED,
  OPERATION_SUPERSEDED: status.ABORTED,
  INVALID_AGENT_NAME: status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  TOO_MANY_WATCHERS: status.RESOURCE_EXHAUSTED,
  TOO_MANY_LOG_STREAMS: status.RESOURCE_EXHAUSTED,
  WATCHER_TOO_SLOW: status.RESOURCE_EXHAUSTED,
  SERVER_SHUTTING_DOWN: status.UNAVAILABLE,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  REQUEST_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  NOT_SUPPORTED: status.UNIMPLEMENTED,
  PACKAGE_INVALID: status.INVALID_ARGUMENT,
  PROVISIONING_FAILED: status.FAILED_PRECONDITION,
  PACKAGE_EXISTS: status.FAILED_PRECONDITION,
  AGENT_NAME_TAKEN: status.FAILED_PRECONDITION,
  AGENT_NOT_INSTALLED: status.FAILED_PRECONDITION,
  INSTALL_IN_PROGRESS: status.ABORTED,
  TOO_MANY_INSTALLS: status.RESOURCE_EXHAUSTED,
  // Raised by an embedded server's own methods, never by a served call.
  SERVER_NOT_STARTED: status.UNAVAILABLE,
  SERVER_START_FAILED: status.UNAVAILABLE,
};

/** The gRPC status code of a DeployError code. */
export function grpcCodeFor(code: DeployErrorCode): status {
  return GRPC_CODE[code];
}

/**
 * The full status of an expected failure: code, the error's message (which by contract is safe
 * to show), and the `grpc-status-details-bin` trailer with the ErrorInfo.
 */
export function deployErrorToStatus(error: DeployError): RpcStatus {
  const code = grpcCodeFor(error.code);
  const errorInfo = create(ErrorInfoSchema, {
    reason: error.code,
    domain: ERROR_DOMAIN,
    metadata: { ...error.metadata },
  });
  const details = create(StatusSchema, {
    code,
    message: error.message,
    details: [anyPack(ErrorInfoSchema, errorInfo)],
  });
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(toBinary(StatusSchema, details)));
  return { code, details: error.message, metadata };
}

/**
 * The server's `ErrorToStatus`: DeployErrors map through `deployErrorToStatus`; anything else is
 * INTERNAL "internal error" and is logged at error level with the method and the cause.
 */
export function createErrorToStatus(logger: Logger): ErrorToStatus {
  return (error, call) => {
    if (error instanceof DeployError) return deployErrorToStatus(error);
    logger.error("unexpected error in RPC handler", {
      ...(call === undefined ? {} : { method: call.method }),
      error,
    });
    return { code: status.INTERNAL, details: INTERNAL_ERROR_MESSAGE, metadata: new Metadata() };
  };
}

/**
 * The `google.rpc.Status` in a response's trailers, or undefined when there is none or it is not
 * a valid Status (a client must not fail on a malformed detail from some other server).
 */
export function decodeStatusDetails(metadata: Metadata): Status | undefined {
  const value = metadata.get(STATUS_DETAILS_KEY)[0];
  if (!(value instanceof Uint8Array)) return undefined;
  try {
    return fromBinary(StatusSchema, value);
  } catch {
    // Not a google.rpc.Status: treat as absent; the status code and message still apply.
    return undefined;
  }
}

/** The first `google.rpc.ErrorInfo` detail in a response's trailers, if any. */
export function decodeErrorInfo(metadata: Metadata): ErrorInfo | undefined {
  const details = decodeStatusDetails(metadata);
  if (details === undefined) return undefined;
  for (const detail of details.details) {
    if (!anyIs(detail, ErrorInfoSchema)) continue;
    try {
      const info = anyUnpack(detail, ErrorInfoSchema);
      if (info !== undefined) return info;
    } catch {
      // A detail whose bytes do not decode is skipped like an unknown detail type.
    }
  }
  return undefined;
}
