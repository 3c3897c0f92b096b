/**
 * Replies as Connect wants them: messages, since Connect serializes them itself and may have to
 * write JSON.
 */
import { type DescMessage, fromBinary, type Message, type MessageShape } from "@bufbuild/protobuf";
import { EncodedMessage, type Reply } from "../rpc/service-handlers.ts";

/**
 * Turns replies into messages for Connect. An `EncodedMessage` is decoded once and the result
 * kept as long as the encoded object lives (watch events go to every watcher alike).
 */
export class ReplyDecoder {
  readonly #decoded = new WeakMap<EncodedMessage, Message>();

  message(
    schema: DescMessage,
    reply: Reply<DescMessage>,
  ): MessageShape<DescMessage> | Reply<DescMessage> {
    if (!(reply instanceof EncodedMessage)) return reply;
    if (reply.schema.typeName !== schema.typeName) {
      throw new TypeError(`an encoded ${reply.schema.typeName} is not a ${schema.typeName}`);
    }
    let message = this.#decoded.get(reply);
    if (message === undefined) {
      message = fromBinary(schema, reply.bytes);
      this.#decoded.set(reply, message);
    }
    return message as MessageShape<DescMessage>;
  }
}
