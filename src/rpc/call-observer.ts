/**
 * The hook through which the call wrappers of both transports (grpc-js in `grpc-adapter.ts`,
 * Connect in `src/http/connect-adapter.ts`) report the calls they serve: what
 * `grpc_server_handled_total` and `atoll_watch_streams` are counted from. It must not throw or
 * block; it sees only method names and status codes, never requests or metadata.
 */
import type { DescMethod } from "@bufbuild/protobuf";

/** Ends one call: its final gRPC status code (0 OK, 1 CANCELLED, 4 DEADLINE_EXCEEDED, ...). */
export type CallEnd = (code: number) => void;

export interface CallObserver {
  /** A call reached its handler; the returned function is called exactly once when it ends. */
  started(method: DescMethod): CallEnd;
  /**
   * A call refused before its handler ran (authentication), by its path
   * `/package.Service/Method` and status code.
   */
  refused(path: string, code: number): void;
}

/** The status code of a call ended by its signal: DEADLINE_EXCEEDED on a timeout, else CANCELLED. */
export function abortCode(signal: AbortSignal): number {
  const reason: unknown = signal.reason;
  return reason instanceof Error && reason.name === "TimeoutError" ? 4 : 1;
}
