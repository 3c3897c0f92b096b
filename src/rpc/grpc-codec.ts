/**
 * The bytes side of the grpc-js adapter: the service definition (paths and protobuf-es
 * serializers) that grpc-js routes and decodes with, requests that do not decode carried to the
 * handler's wrapper as a marker (so they become INVALID_ARGUMENT through the error mapping, not
 * grpc-js's anonymous INTERNAL), and replies encoded inside the wrapper's error handling.
 */
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  isMessage,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { DeployError } from "../core/errors.ts";
import { EncodedMessage, methodPath, type Reply } from "./service-handlers.ts";

/**
 * A request whose bytes did not decode. grpc-js answers a throwing deserializer with INTERNAL
 * before any handler runs; decoding to this marker instead lets the wrapper answer
 * INVALID_ARGUMENT through the error mapping.
 */
export class MalformedRequest {
  readonly cause: unknown;
  constructor(cause: unknown) {
    this.cause = cause;
  }
}

function decodeRequest(schema: DescMessage, bytes: Buffer): unknown {
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    return new MalformedRequest(error);
  }
}

/** One message of a request stream with its encoded size, which the stream's bound counts. */
export class StreamedRequest {
  /** The decoded message, or a MalformedRequest. */
  readonly value: unknown;
  readonly byteLength: number;
  constructor(value: unknown, byteLength: number) {
    this.value = value;
    this.byteLength = byteLength;
  }
}

/** The INVALID_ARGUMENT a request that did not decode is answered with. */
export function malformedRequestError(method: DescMethod, request: MalformedRequest): DeployError {
  const why = request.cause instanceof Error ? `: ${request.cause.message}` : "";
  return new DeployError(
    "INVALID_ARGUMENT",
    `request is not a valid ${method.input.typeName}${why}`,
    {},
    { cause: request.cause },
  );
}

/** The bytes of `bytes` as a Buffer, without copying. */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Serializes a response; bytes pass through, so a wrapper can serialize inside its own error
 * handling (a bad response becomes a logged INTERNAL, not grpc-js's anonymous one).
 */
function encodeResponse(schema: DescMessage, value: unknown): Buffer {
  if (value instanceof Uint8Array) return toBuffer(value);
  return toBuffer(toBinary(schema, value as MessageShape<DescMessage>));
}

/**
 * The encoding of a handler's reply. Throws TypeError for an {@link EncodedMessage} of another
 * type, and whatever protobuf-es throws for an init object it cannot encode.
 */
export function encodeReply(schema: DescMessage, reply: Reply<DescMessage>): Buffer {
  if (reply instanceof EncodedMessage) {
    if (reply.schema.typeName !== schema.typeName) {
      throw new TypeError(`an encoded ${reply.schema.typeName} is not a ${schema.typeName}`);
    }
    return toBuffer(reply.bytes);
  }
  const message = isMessage(reply, schema) ? reply : create(schema, reply);
  return toBuffer(toBinary(schema, message));
}

/**
 * The grpc-js service definition of `service`, keyed by method local name. Requests decode with
 * `fromBinary`; undecodable bytes reach the wrapped handler as INVALID_ARGUMENT. Responses
 * encode with `toBinary` (or pass through when already bytes).
 */
export function createServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: methodPath(method),
      originalName: method.name,
      requestStream:
        method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream:
        method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (value) =>
        encodeReply(method.input, value as MessageInitShape<DescMessage>),
      requestDeserialize:
        method.methodKind === "client_streaming"
          ? (bytes) => new StreamedRequest(decodeRequest(method.input, bytes), bytes.length)
          : (bytes) => decodeRequest(method.input, bytes),
      responseSerialize: (value) => encodeResponse(method.output, value),
      responseDeserialize: (bytes) => fromBinary(method.output, bytes),
    };
  }
  return definition;
}
