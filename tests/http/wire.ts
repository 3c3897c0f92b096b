/**
 * The Connect and gRPC-Web wire formats written out by hand for the HTTP tests, so they call the
 * listener the way any plain HTTP client would (fetch and bytes), not through connect's own
 * client: length-prefixed envelopes (1 flag byte, 4-byte big-endian length), Connect's end-stream
 * message (flag 0x02, JSON), gRPC-Web's trailer frame (flag 0x80, HTTP/1 header lines).
 */
import { type DescMessage, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import { type ErrorInfo, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../../gen/google/rpc/status_pb.ts";

export const SERVICE = "/atoll.deployment.v1.DeploymentService";

export interface Envelope {
  readonly flags: number;
  readonly data: Uint8Array;
}

/** One envelope: `flags`, the length, the payload. */
export function envelope(data: Uint8Array, flags = 0): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + data.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, data.length);
  out.set(data, 5);
  return out;
}

/**
 * Reads envelopes from a streaming response body as they arrive (partial chunks are joined),
 * so a test can react to each message before the stream ends.
 */
export async function* readEnvelopes(
  body: ReadableStream<Uint8Array> | null,
): AsyncGenerator<Envelope> {
  if (body === null) throw new Error("no response body");
  const reader = body.getReader();
  let buffered = new Uint8Array(0);
  try {
    for (;;) {
      while (buffered.length >= 5) {
        const length = new DataView(buffered.buffer, buffered.byteOffset).getUint32(1);
        if (buffered.length < 5 + length) break;
        yield { flags: buffered[0] ?? 0, data: buffered.slice(5, 5 + length) };
        buffered = buffered.slice(5 + length);
      }
      const { done, value } = await reader.read();
      if (done) {
        if (buffered.length > 0)
          throw new Error(`${buffered.length} stray bytes after the last envelope`);
        return;
      }
      const joined = new Uint8Array(buffered.length + value.length);
      joined.set(buffered);
      joined.set(value, buffered.length);
      buffered = joined;
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}

/** All envelopes of a finished response. */
export async function allEnvelopes(response: Response): Promise<Envelope[]> {
  const out: Envelope[] = [];
  for await (const item of readEnvelopes(response.body)) out.push(item);
  return out;
}

export function decode<S extends DescMessage>(schema: S, item: Envelope): MessageShape<S> {
  return fromBinary(schema, item.data);
}

/** A Connect error as its JSON body (unary) or end-stream `error` (streaming) carries it. */
export interface ConnectErrorJson {
  readonly code: string;
  readonly message?: string;
  readonly details?: readonly { readonly type: string; readonly value: string }[];
}

/** The ErrorInfo among a Connect error's details (values are unpadded base64). */
export function connectErrorInfo(error: ConnectErrorJson): ErrorInfo | undefined {
  const detail = error.details?.find((d) => d.type === "google.rpc.ErrorInfo");
  return detail === undefined
    ? undefined
    : fromBinary(ErrorInfoSchema, Buffer.from(detail.value, "base64"));
}

/** The `grpc-*` lines of a gRPC-Web trailer frame as a map (keys lower-cased). */
export function grpcWebTrailers(item: Envelope): Map<string, string> {
  if ((item.flags & 0x80) === 0) throw new Error("not a trailer frame");
  const trailers = new Map<string, string>();
  for (const line of Buffer.from(item.data).toString("latin1").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0)
      trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return trailers;
}

/** The ErrorInfo of a gRPC-Web (or gRPC) `grpc-status-details-bin` value. */
export function statusDetailsErrorInfo(base64: string | undefined): ErrorInfo | undefined {
  if (base64 === undefined) return undefined;
  const status = fromBinary(StatusSchema, Buffer.from(base64, "base64"));
  const any = status.details.find((d) => d.typeUrl.endsWith("/google.rpc.ErrorInfo"));
  return any === undefined ? undefined : fromBinary(ErrorInfoSchema, any.value);
}
