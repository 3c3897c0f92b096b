import { setImmediate as nextTurn } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, Metadata, Server, type ServiceError, status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  DeploymentService,
  DeployRequestSchema,
  type DeployResponseSchema,
  GetStatusResponseSchema,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { DeployError } from "../../src/core/errors.ts";
import { createErrorToStatus, decodeErrorInfo } from "../../src/rpc/error-mapping.ts";
import { addService, createServiceImplementation } from "../../src/rpc/grpc-adapter.ts";
import { createClient, RpcError } from "../../src/rpc/grpc-client.ts";
import { createServiceDefinition } from "../../src/rpc/grpc-codec.ts";
import {
  type CallContext,
  EncodedMessage,
  type ServiceHandlers,
} from "../../src/rpc/service-handlers.ts";
import { deferred, fakeHandlers, listen, MemoryLogger, Resources } from "./helpers.ts";

const resources = new Resources();
afterEach(() => resources.closeAll());

type Handlers = Partial<ServiceHandlers<typeof DeploymentService>>;

async function start(overrides: Handlers) {
  const logger = new MemoryLogger();
  const server = resources.server(new Server());
  addService(server, DeploymentService, fakeHandlers(overrides), {
    toStatus: createErrorToStatus(logger),
    logger,
  });
  const address = await listen(server);
  const client = resources.client(
    createClient(DeploymentService, address, credentials.createInsecure()),
  );
  return { address, client, logger };
}

async function rpcError(promise: Promise<unknown>): Promise<RpcError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RpcError);
  return error as RpcError;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

/** Resolves with the signal's reason once it aborts. */
function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(signal.reason), { once: true }),
  );
}

describe("service definition", () => {
  it("maps every RPC to its gRPC path with the right streaming flags", () => {
    const definition = createServiceDefinition(DeploymentService);
    expect(definition.deploy?.path).toBe("/atoll.deployment.v1.DeploymentService/Deploy");
    expect(definition.deploy?.responseStream).toBe(false);
    expect(definition.watchHealth?.path).toBe("/atoll.deployment.v1.DeploymentService/WatchHealth");
    expect(definition.watchHealth?.responseStream).toBe(true);
    expect(definition.watchHealth?.requestStream).toBe(false);
  });

  it("refuses an implementation that lacks a handler", () => {
    const { deploy: _omitted, ...partial } = fakeHandlers({});
    expect(() =>
      createServiceImplementation(
        DeploymentService,
        partial as ServiceHandlers<typeof DeploymentService>,
        { toStatus: createErrorToStatus(new MemoryLogger()) },
      ),
    ).toThrow(/Deploy/);
  });
});

describe("unary calls", () => {
  it("answers with the handler's response and gives it metadata, deadline and peer", async () => {
    let seen: CallContext | undefined;
    const { client } = await start({
      deploy: async (request, context) => {
        seen = context;
        return { agent: { name: request.name, port: 8100 } };
      },
    });
    const response = await client.deploy(
      { name: "alpha" },
      { metadata: { "x-request-id": "r1" }, deadlineMs: 10_000 },
    );
    expect(response.agent?.name).toBe("alpha");
    expect(response.agent?.port).toBe(8100);
    expect(seen?.metadata.get("x-request-id")).toEqual(["r1"]);
    expect(seen?.deadline).toBeInstanceOf(Date);
    expect(seen?.peer).toContain("127.0.0.1");
    expect(seen?.method.name).toBe("Deploy");
    expect(seen?.signal.aborted).toBe(false);
  });

  it("sends an encoded reply as it is, and refuses one encoded as another message", async () => {
    const agent = create(GetStatusResponseSchema, { agent: { name: "alpha", port: 8101 } });
    const { client } = await start({
      getStatus: async () =>
        new EncodedMessage(GetStatusResponseSchema, toBinary(GetStatusResponseSchema, agent)),
      deploy: async () =>
        new EncodedMessage(
          GetStatusResponseSchema,
          toBinary(GetStatusResponseSchema, agent),
        ) as unknown as EncodedMessage<typeof DeployResponseSchema>,
    });
    expect((await client.getStatus({ name: "alpha" })).agent?.port).toBe(8101);
    expect((await rpcError(client.deploy({ name: "alpha" }))).code).toBe(status.INTERNAL);
  });

  it("turns a thrown error into INTERNAL with a generic message, logs it and keeps serving", async () => {
    const { client, logger } = await start({
      getStatus: async () => {
        throw new Error("secret: /var/lib/atoll/state.json is corrupt");
      },
      // A handler that throws before returning its promise must be caught too.
      undeploy: () => {
        throw new TypeError("synchronous bug");
      },
      listAgents: async () => ({ agents: [{ name: "a" }, { name: "b" }] }),
    });
    const error = await rpcError(client.getStatus({ name: "a" }));
    expect(error.code).toBe(status.INTERNAL);
    expect(error.details).toBe("internal error");
    expect(error.message).not.toContain("secret");
    expect(error.reason).toBeUndefined();

    const syncError = await rpcError(client.undeploy({ name: "a" }));
    expect(syncError.code).toBe(status.INTERNAL);

    const logged = logger.lines.filter((line) => line.level === "error");
    expect(logged).toHaveLength(2);
    expect(logged[0]?.fields?.method).toBe("/atoll.deployment.v1.DeploymentService/GetStatus");
    expect(String(logged[0]?.fields?.error)).toContain("secret");

    const list = await client.listAgents({});
    expect(list.agents.map((agent) => agent.name)).toEqual(["a", "b"]);
  });

  it("maps a DeployError to its status code and an ErrorInfo the client decodes", async () => {
    const { client } = await start({
      deploy: async (request) => {
        throw new DeployError("AGENT_NOT_FOUND", `no agent named ${request.name}`, {
          agent: request.name,
        });
      },
    });
    const error = await rpcError(client.deploy({ name: "ghost" }));
    expect(error.code).toBe(status.NOT_FOUND);
    expect(error.details).toBe("no agent named ghost");
    expect(error.reason).toBe("AGENT_NOT_FOUND");
    expect(error.metadata).toEqual({ agent: "ghost" });
    expect(decodeErrorInfo(error.trailers)?.domain).toBe("atoll.deploy");
  });

  it("answers undecodable request bytes with INVALID_ARGUMENT without calling the handler", async () => {
    let called = false;
    const { address } = await start({
      deploy: async () => {
        called = true;
        return {};
      },
    });
    const raw = resources.client(new Client(address, credentials.createInsecure()));
    // Field 1 (name), length-delimited, claims 100 bytes but carries 1.
    const garbage = Buffer.from([0x0a, 0x64, 0x41]);
    const error = await new Promise<ServiceError>((resolve, reject) => {
      raw.makeUnaryRequest(
        "/atoll.deployment.v1.DeploymentService/Deploy",
        (bytes: Buffer) => bytes,
        (bytes: Buffer) => bytes,
        garbage,
        new Metadata(),
        {},
        (err) => (err === null ? reject(new Error("call succeeded")) : resolve(err)),
      );
    });
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toContain("atoll.deployment.v1.DeployRequest");
    expect(decodeErrorInfo(error.metadata)?.reason).toBe("INVALID_ARGUMENT");
    expect(called).toBe(false);

    // The same bytes, well-formed, are served normally on the same connection.
    const valid = Buffer.from(
      toBinary(DeployRequestSchema, create(DeployRequestSchema, { name: "ok" })),
    );
    await new Promise<void>((resolve, reject) => {
      raw.makeUnaryRequest(
        "/atoll.deployment.v1.DeploymentService/Deploy",
        (bytes: Buffer) => bytes,
        (bytes: Buffer) => bytes,
        valid,
        (err) => (err === null ? resolve() : reject(err)),
      );
    });
    expect(called).toBe(true);
  });

  it("aborts the handler's signal when the client cancels, and drops the late answer", async () => {
    const started = deferred();
    const handlerDone = deferred<unknown>();
    const { client, logger } = await start({
      deploy: async (_request, context) => {
        started.resolve();
        const reason = await aborted(context.signal);
        handlerDone.resolve(reason);
        // Answering after the cancel must be ignored cleanly, as must throwing.
        return { agent: { name: "late" } };
      },
      undeploy: async (_request, context) => {
        started.resolve();
        await aborted(context.signal);
        throw new Error("failed after cancel");
      },
    });
    const controller = new AbortController();
    const call = client.deploy({ name: "a" }, { signal: controller.signal });
    await started.promise;
    controller.abort();
    const error = await rpcError(call);
    expect(error.code).toBe(status.CANCELLED);
    const reason = await handlerDone.promise;
    expect(reason).toBeInstanceOf(DOMException);
    expect((reason as DOMException).name).toBe("AbortError");

    const controller2 = new AbortController();
    const call2 = client.undeploy({ name: "a" }, { signal: controller2.signal });
    controller2.abort();
    expect((await rpcError(call2)).code).toBe(status.CANCELLED);

    // Still serving; nothing was logged as an unexpected error.
    await expect(rpcError(client.getStatus({ name: "a" }))).resolves.toBeInstanceOf(RpcError);
    expect(logger.lines.filter((line) => line.level === "error")).toEqual([]);
  });

  it("aborts the handler's signal with a TimeoutError when the deadline passes", async () => {
    const handlerReason = deferred<unknown>();
    const { client } = await start({
      restart: async (_request, context) => {
        handlerReason.resolve(await aborted(context.signal));
        return {};
      },
    });
    const error = await rpcError(client.restart({ name: "a" }, { deadlineMs: 300 }));
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    expect((await handlerReason.promise) as DOMException).toHaveProperty("name", "TimeoutError");
  });

  it("fails without calling when the signal is already aborted", async () => {
    const { client } = await start({});
    const error = await rpcError(client.deploy({ name: "a" }, { signal: AbortSignal.abort() }));
    expect(error.code).toBe(status.CANCELLED);
  });

  it("reports an unreachable server as UNAVAILABLE", async () => {
    const server = new Server();
    const address = await listen(server);
    server.forceShutdown();
    const client = resources.client(
      createClient(DeploymentService, address, credentials.createInsecure()),
    );
    const error = await rpcError(client.getStatus({ name: "a" }, { deadlineMs: 5_000 }));
    expect(error.code).toBe(status.UNAVAILABLE);
  });
});

describe("server-streaming calls", () => {
  it("streams the handler's messages in order, then ends OK", async () => {
    const { client } = await start({
      streamLogs: async function* (request) {
        for (let i = 0; i < request.tailLines; i++) yield { lines: [`line ${i}`] };
      },
    });
    const messages = await collect(client.streamLogs({ name: "a", tailLines: 3 }));
    expect(messages.map((m) => m.lines)).toEqual([["line 0"], ["line 1"], ["line 2"]]);
  });

  it("ends the stream with the mapped status when the handler throws midway", async () => {
    const { client, logger } = await start({
      watchHealth: async function* () {
        yield { revision: 1n };
        throw new DeployError("WATCHER_TOO_SLOW", "watcher fell behind");
      },
      streamLogs: async function* () {
        yield { lines: ["x"] };
        throw new Error("disk on fire");
      },
    });
    const received: bigint[] = [];
    const error = await rpcError(
      (async () => {
        for await (const event of client.watchHealth({})) received.push(event.revision);
      })(),
    );
    expect(received).toEqual([1n]);
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(error.reason).toBe("WATCHER_TOO_SLOW");

    const internal = await rpcError(collect(client.streamLogs({ name: "a" })));
    expect(internal.code).toBe(status.INTERNAL);
    expect(internal.details).toBe("internal error");
    expect(logger.lines.some((line) => line.level === "error")).toBe(true);
  });

  it("answers undecodable request bytes with INVALID_ARGUMENT", async () => {
    const { address } = await start({});
    const raw = resources.client(new Client(address, credentials.createInsecure()));
    const call = raw.makeServerStreamRequest(
      "/atoll.deployment.v1.DeploymentService/WatchHealth",
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      Buffer.from([0x0a, 0x64, 0x41]),
    );
    const error = await new Promise<ServiceError>((resolve) => call.on("error", resolve));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(decodeErrorInfo(error.metadata)?.reason).toBe("INVALID_ARGUMENT");
  });

  it("cancels the call and ends the handler when the consumer stops iterating", async () => {
    const handlerEnded = deferred();
    const handlerSignal = deferred<AbortSignal>();
    const { client } = await start({
      watchHealth: async function* (_request, context) {
        handlerSignal.resolve(context.signal);
        try {
          for (let revision = 1n; ; revision++) yield { revision };
        } finally {
          handlerEnded.resolve();
        }
      },
    });
    let count = 0;
    for await (const _event of client.watchHealth({})) {
      if (++count === 3) break;
    }
    const signal = await handlerSignal.promise;
    await aborted(signal);
    await handlerEnded.promise;
  });

  it("cancels the call when the client's signal aborts, even while the handler waits", async () => {
    const handlerReason = deferred<unknown>();
    const { client } = await start({
      watchHealth: async function* (_request, context) {
        yield { revision: 1n };
        // Waits for events that never come; only the signal ends it.
        handlerReason.resolve(await aborted(context.signal));
      },
    });
    const controller = new AbortController();
    const error = await rpcError(
      (async () => {
        for await (const _event of client.watchHealth({}, { signal: controller.signal })) {
          controller.abort();
        }
      })(),
    );
    expect(error.code).toBe(status.CANCELLED);
    expect(await handlerReason.promise).toHaveProperty("name", "AbortError");
  });

  it("pulls from the handler only as fast as a slow client reads", async () => {
    const total = 2_000;
    const payload = "x".repeat(32 * 1024);
    let produced = 0;
    const { client } = await start({
      streamLogs: async function* () {
        for (let i = 0; i < total; i++) {
          produced++;
          yield { lines: [String(i), payload] };
        }
      },
    });
    // Without backpressure the whole stream (64 MiB) would be produced before the client reads
    // its first message. With it, only what fits in the grpc-js and HTTP/2 buffers runs ahead.
    const maxAhead = 100;
    let consumed = 0;
    let worstAhead = 0;
    for await (const message of client.streamLogs({ name: "a" })) {
      expect(message.lines[0]).toBe(String(consumed));
      consumed++;
      for (let turn = 0; turn < 5; turn++) await nextTurn();
      worstAhead = Math.max(worstAhead, produced - consumed);
      if (consumed === 300) break;
    }
    expect(worstAhead).toBeLessThanOrEqual(maxAhead);
    expect(produced).toBeLessThan(total);
  });
});

describe("call observer", () => {
  /** A server whose observer records `[method, code]` per ended call; `ended(n)` waits for n. */
  async function observed(overrides: Handlers) {
    const calls: [string, number][] = [];
    let waiting: { count: number; resolve: () => void } | undefined;
    const observer = {
      started: (method: { name: string }) => (code: number) => {
        calls.push([method.name, code]);
        if (waiting !== undefined && calls.length >= waiting.count) waiting.resolve();
      },
      refused: () => undefined,
    };
    const server = resources.server(new Server());
    addService(server, DeploymentService, fakeHandlers(overrides), {
      toStatus: createErrorToStatus(new MemoryLogger()),
      observer,
    });
    const client = resources.client(
      createClient(DeploymentService, await listen(server), credentials.createInsecure()),
    );
    const ended = (count: number) =>
      calls.length >= count
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            waiting = { count, resolve };
          });
    return { client, calls, ended };
  }

  it("reports each call's final status code: OK, a mapped error, a cancel", async () => {
    const { client, calls, ended } = await observed({
      getStatus: async (request) => {
        if (request.name === "missing") throw new DeployError("AGENT_NOT_FOUND", "no such agent");
        return { agent: { name: request.name } };
      },
      watchHealth: async function* () {
        for (let revision = 1n; ; revision++) yield { revision };
      },
    });
    await client.getStatus({ name: "a" });
    await rpcError(client.getStatus({ name: "missing" }));
    let count = 0;
    for await (const _event of client.watchHealth({})) {
      if (++count === 2) break;
    }
    await ended(3);
    expect(calls).toEqual([
      ["GetStatus", status.OK],
      ["GetStatus", status.NOT_FOUND],
      ["WatchHealth", status.CANCELLED],
    ]);
  });

  it("reports a stream that ends by itself as OK and a passed deadline as DEADLINE_EXCEEDED", async () => {
    const { client, calls, ended } = await observed({
      streamLogs: async function* () {
        yield { lines: ["one"] };
      },
      restart: async (_request, context) => {
        await aborted(context.signal);
        return {};
      },
    });
    await collect(client.streamLogs({ name: "a" }));
    await rpcError(client.restart({ name: "a" }, { deadlineMs: 200 }));
    await ended(2);
    expect(calls).toEqual([
      ["StreamLogs", status.OK],
      ["Restart", status.DEADLINE_EXCEEDED],
    ]);
  });
});
