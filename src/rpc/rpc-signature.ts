/**
 * The TypeScript signature of an RPC, by side (client method or server handler) and method kind,
 * from its protobuf-es descriptor. TypeScript has no higher-kinded types, so both sides pick from
 * this one table rather than each repeating the conditional over `methodKind`.
 */
import type { DescMessage } from "@bufbuild/protobuf";
import type {
  ClientStreamingClientMethod,
  ServerStreamingClientMethod,
  UnaryClientMethod,
} from "./grpc-client.ts";
import type {
  ClientStreamingHandler,
  ServerStreamingHandler,
  UnaryHandler,
} from "./service-handlers.ts";

export interface RpcSignatures<I extends DescMessage, O extends DescMessage> {
  readonly client: {
    readonly unary: UnaryClientMethod<I, O>;
    readonly server_streaming: ServerStreamingClientMethod<I, O>;
    readonly client_streaming: ClientStreamingClientMethod<I, O>;
  };
  readonly server: {
    readonly unary: UnaryHandler<I, O>;
    readonly server_streaming: ServerStreamingHandler<I, O>;
    readonly client_streaming: ClientStreamingHandler<I, O>;
  };
}

/** The signature of method descriptor `M` on `side`; `never` for bidi streaming. */
export type RpcSignature<M, Side extends "client" | "server"> = M extends {
  readonly methodKind: infer K;
  readonly input: infer I extends DescMessage;
  readonly output: infer O extends DescMessage;
}
  ? K extends keyof RpcSignatures<I, O>[Side]
    ? RpcSignatures<I, O>[Side][K]
    : never
  : never;
