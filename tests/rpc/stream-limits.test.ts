import { credentials, status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { systemClock } from "../../src/core/clock.ts";
import { isDeployError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { createClient, RpcError, type ServiceClient } from "../../src/rpc/grpc-client.ts";
import { type RpcServer, type RpcServerOptions, startRpcServer } from "../../src/rpc/server.ts";
import { StreamLimiter } from "../../src/rpc/stream-limits.ts";
import { createHarness, faultAgentToml, type Harness } from "../supervisor/harness.ts";

type Client = ServiceClient<typeof DeploymentService>;

let harness: Harness | undefined;
let server: RpcServer | undefined;
const clients: Client[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  server?.beginDrain();
  await server?.close(1000);
  await harness?.close();
  harness = undefined;
  server = undefined;
});

async function setup(options: Pick<RpcServerOptions, "watchCap" | "logFollowCap">) {
  harness = await createHarness({ a: faultAgentToml("a") });
  server = await startRpcServer({
    backend: harness.registry,
    clock: systemClock,
    logger: silentLogger,
    listen: "127.0.0.1:0",
    ...options,
  });
  return server.address;
}

/** A client on its own HTTP/2 connection (grpc-js shares connections between equal channels). */
function connect(address: string): Client {
  const client = createClient(DeploymentService, address, credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  clients.push(client);
  return client;
}

/** Opens a stream and waits for its first message (or its error), keeping it open. */
async function open<T>(stream: AsyncIterable<T>): Promise<AsyncIterator<T>> {
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next();
  return iterator;
}

async function refusal(stream: AsyncIterable<unknown>): Promise<RpcError> {
  try {
    for await (const _ of stream) {
      // The first message means the stream was accepted.
      break;
    }
  } catch (error) {
    if (error instanceof RpcError) return error;
    throw error;
  }
  throw new Error("expected the stream to be refused");
}

describe("StreamLimiter", () => {
  it("caps streams per client and overall, and frees a place when a stream ends", () => {
    const limiter = new StreamLimiter({ total: 3, perClient: 2 }, "TOO_MANY_WATCHERS", "streams");
    const a1 = limiter.acquire("a");
    limiter.acquire("a");
    let refusedA: unknown;
    try {
      limiter.acquire("a");
    } catch (error) {
      refusedA = error;
    }
    expect(isDeployError(refusedA, "TOO_MANY_WATCHERS")).toBe(true);
    expect((refusedA as { metadata: Record<string, string> }).metadata.scope).toBe("client");
    limiter.acquire("b");
    expect(() => limiter.acquire("c")).toThrow(/on this server/);
    a1();
    a1(); // releasing twice frees one place only
    expect(limiter.open).toBe(2);
    limiter.acquire("c");
    expect(limiter.open).toBe(3);
  });

  it("refuses caps that cannot work", () => {
    expect(() => new StreamLimiter({ total: 1, perClient: 2 }, "TOO_MANY_WATCHERS", "x")).toThrow(
      RangeError,
    );
    expect(() => new StreamLimiter({ total: 5, perClient: 0 }, "TOO_MANY_WATCHERS", "x")).toThrow(
      RangeError,
    );
  });
});

describe("stream caps over gRPC", () => {
  it("stops one client's log follows at its cap while another client still follows and lists", async () => {
    const address = await setup({ logFollowCap: { total: 100, perClient: 20 } });
    const greedy = connect(address);
    const other = connect(address);
    await greedy.deploy({ name: "a" });
    // A thousand follow requests from one connection: 20 are served, the rest refused at once.
    const attempts = Array.from({ length: 1000 }, () =>
      greedy.streamLogs({ name: "a", follow: true, tailLines: 1 })[Symbol.asyncIterator](),
    );
    const outcomes = await Promise.allSettled(attempts.map((iterator) => iterator.next()));
    const refused = outcomes.filter((o) => o.status === "rejected");
    expect(outcomes.length - refused.length).toBe(20);
    for (const outcome of refused) {
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({
        code: status.RESOURCE_EXHAUSTED,
        reason: "TOO_MANY_LOG_STREAMS",
        metadata: { scope: "client" },
      });
    }
    // The other client is unaffected: it lists, and it may follow too.
    expect((await other.listAgents({})).agents.map((agent) => agent.name)).toEqual(["a"]);
    const follow = await open(other.streamLogs({ name: "a", follow: true, tailLines: 1 }));
    // A tail without follow holds no place, so the greedy client can still read its tail.
    const tail = await refusalOrLines(greedy.streamLogs({ name: "a", tailLines: 1 }));
    expect(tail).toBe("ok");
    await follow.return?.();
    await Promise.all(attempts.map((iterator) => iterator.return?.()));
  });

  it("frees a client's place when its stream ends", async () => {
    const address = await setup({ watchCap: { total: 10, perClient: 1 } });
    const client = connect(address);
    const first = await open(client.watchHealth({}));
    expect(await refusal(client.watchHealth({}))).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      reason: "TOO_MANY_WATCHERS",
      metadata: { scope: "client" },
    });
    await first.return?.();
    // The server sees the cancel asynchronously: retry until the place is free (bounded).
    let second: AsyncIterator<unknown> | undefined;
    for (let attempt = 0; second === undefined && attempt < 200; attempt++) {
      second = await open(client.watchHealth({})).catch(async (error: unknown) => {
        if (!(error instanceof RpcError) || error.code !== status.RESOURCE_EXHAUSTED) throw error;
        await new Promise((resolve) => setImmediate(resolve));
        return undefined;
      });
    }
    expect(second).toBeDefined();
    await second?.return?.();
  });

  it("refuses a watch with scope server once the overall cap is reached by several clients", async () => {
    const address = await setup({ watchCap: { total: 2, perClient: 1 } });
    const held = [
      await open(connect(address).watchHealth({})),
      await open(connect(address).watchHealth({})),
    ];
    expect(await refusal(connect(address).watchHealth({}))).toMatchObject({
      code: status.RESOURCE_EXHAUSTED,
      reason: "TOO_MANY_WATCHERS",
      metadata: { scope: "server" },
    });
    await Promise.all(held.map((iterator) => iterator.return?.()));
  });
});

async function refusalOrLines(stream: AsyncIterable<unknown>): Promise<"ok" | RpcError> {
  try {
    for await (const _ of stream) {
      // drain
    }
    return "ok";
  } catch (error) {
    if (error instanceof RpcError) return error;
    throw error;
  }
}
