/**
 * Encoding agents for the wire once, not once per call or per watcher. Building an `Agent`
 * message and running `toBinary` over it is most of what a status call costs, and a watch event
 * goes out to every watcher alike; so each agent's encoding is kept until its status changes, and
 * each change's event is encoded once for all watchers.
 *
 * Responses are composed from those bytes rather than re-encoded: a protobuf message field is a
 * tag and length-prefixed bytes, a repeated one is that field once per element, and parsers take
 * fields in any order (protobuf encoding spec, "Message Structure" and "Field Order").
 */
import { create, type DescMessage, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AgentSchema } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  WatchEventType,
  WatchHealthResponseSchema,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { AgentChange, AgentStatus } from "../core/agent-status.ts";
import { agentStateToProto, agentToProto, healthToProto } from "./agent-convert.ts";
import { EncodedMessage } from "./service-handlers.ts";

/** Equal primitives, or arrays / records (`lastExit`) whose members are equal primitives. */
// Without allocating: this runs for every agent of every ListAgents and GetStatus call.
function sameMember(x: unknown, y: unknown): boolean {
  if (Object.is(x, y)) return true;
  if (typeof x !== "object" || typeof y !== "object" || x === null || y === null) return false;
  if (Array.isArray(x) || Array.isArray(y)) {
    if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
    return true;
  }
  const xs = x as Record<string, unknown>;
  const ys = y as Record<string, unknown>;
  let keys = 0;
  for (const key in xs) {
    keys += 1;
    if (!Object.is(xs[key], ys[key])) return false;
  }
  for (const _ in ys) keys -= 1;
  return keys === 0;
}

/** Member by member: a runner builds a fresh status object on every request. */
function sameStatus(a: AgentStatus, b: AgentStatus): boolean {
  for (const key in a) {
    const member = key as keyof AgentStatus;
    if (!sameMember(a[member], b[member])) return false;
  }
  return true;
}

/** Number of the message field `localName` of `schema`; throws when there is none. */
function messageFieldNumber(schema: DescMessage, localName: string): number {
  const field = schema.fields.find((f) => f.localName === localName);
  if (field === undefined || field.message?.typeName !== AgentSchema.typeName) {
    throw new TypeError(`${schema.typeName} has no Agent field ${localName}`);
  }
  return field.number;
}

function varintSize(value: number): number {
  let size = 1;
  for (let v = value; v > 0x7f; v >>>= 7) size += 1;
  return size;
}

function writeVarint(out: Uint8Array, at: number, value: number): number {
  let pos = at;
  let v = value;
  while (v > 0x7f) {
    out[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[pos++] = v;
  return pos;
}

/**
 * `rest` followed by one length-delimited field with tag `tag` per payload, sized and written in
 * one allocation (a growing writer spends most of its time reallocating here).
 */
function appendFields(
  rest: Uint8Array | undefined,
  tag: number,
  payloads: readonly Uint8Array[],
): Uint8Array {
  let size = rest?.length ?? 0;
  for (const payload of payloads) {
    size += varintSize(tag) + varintSize(payload.length) + payload.length;
  }
  const out = new Uint8Array(size);
  let pos = 0;
  if (rest !== undefined) {
    out.set(rest, 0);
    pos = rest.length;
  }
  for (const payload of payloads) {
    pos = writeVarint(out, pos, tag);
    pos = writeVarint(out, pos, payload.length);
    out.set(payload, pos);
    pos += payload.length;
  }
  return out;
}

/** Keeps the encoding of each agent's latest status and of each change's watch event. */
export class AgentEncoder {
  readonly #agents = new Map<string, { status: AgentStatus; bytes: Uint8Array }>();
  readonly #events = new WeakMap<AgentChange, EncodedMessage<typeof WatchHealthResponseSchema>>();

  /**
   * The `Agent` encoding of `status`, encoded again only when the status differs. A backend that
   * hands out the same object until the agent changes (the local supervisor does) is answered by
   * identity; a fresh but equal object is compared member by member.
   */
  agent(status: AgentStatus): Uint8Array {
    const cached = this.#agents.get(status.name);
    if (cached !== undefined && (cached.status === status || sameStatus(cached.status, status))) {
      return cached.bytes;
    }
    const bytes = toBinary(AgentSchema, agentToProto(status));
    this.#agents.set(status.name, { status, bytes });
    return bytes;
  }

  /**
   * A `schema` message whose Agent field `field` (singular or repeated) holds `statuses`,
   * appended to `rest`, the encoding of the message's other fields.
   */
  reply<S extends DescMessage>(
    schema: S,
    field: string,
    statuses: readonly AgentStatus[],
    rest?: Uint8Array,
  ): EncodedMessage<S> {
    const tag = (messageFieldNumber(schema, field) << 3) | WireType.LengthDelimited;
    return new EncodedMessage(
      schema,
      appendFields(
        rest,
        tag,
        statuses.map((status) => this.agent(status)),
      ),
    );
  }

  /** The CHANGE or REMOVED event of `change`, encoded at most once whoever sends it. */
  changeEvent(change: AgentChange): EncodedMessage<typeof WatchHealthResponseSchema> {
    let event = this.#events.get(change);
    if (event === undefined) {
      const rest = toBinary(
        WatchHealthResponseSchema,
        create(WatchHealthResponseSchema, {
          type: change.kind === "removed" ? WatchEventType.REMOVED : WatchEventType.CHANGE,
          revision: BigInt(change.revision),
          previousState: agentStateToProto(change.previousState),
          previousHealth: healthToProto(change.previousHealth),
          time: timestampFromMs(change.atMs),
        }),
      );
      event = this.reply(WatchHealthResponseSchema, "agent", [change.status], rest);
      this.#events.set(change, event);
      if (change.kind === "removed") this.#agents.delete(change.name);
    }
    return event;
  }

  /**
   * The SNAPSHOT events of `statuses` at `revision`, all stamped `atMs`: the fields besides the
   * agent are encoded once for the whole snapshot.
   */
  snapshotEvents(
    statuses: readonly AgentStatus[],
    revision: number,
    atMs: number,
  ): EncodedMessage<typeof WatchHealthResponseSchema>[] {
    const rest = toBinary(
      WatchHealthResponseSchema,
      create(WatchHealthResponseSchema, {
        type: WatchEventType.SNAPSHOT,
        revision: BigInt(revision),
        time: timestampFromMs(atMs),
      }),
    );
    return statuses.map((status) => this.reply(WatchHealthResponseSchema, "agent", [status], rest));
  }
}
