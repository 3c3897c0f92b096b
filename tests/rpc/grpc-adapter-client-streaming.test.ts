import { setImmediate as nextTurn } from "node:timers/promises";
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Client, credentials, Metadata, Server, type ServiceError, status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  DeploymentService,
  InstallAgentRequestSchema,
  InstallOutcome,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { DeployError } from "../../src/core/errors.ts";
import { createErrorToStatus, decodeErrorInfo } from "../../src/rpc/error-mapping.ts";
import { addService } from "../../src/rpc/grpc-adapter.ts";
import { createClient, RpcError } from "../../src/rpc/grpc-client.ts";
import { createServiceDefinition } from "../../src/rpc/grpc-codec.ts";
import type { ServiceHandlers } from "../../src/rpc/service-handlers.ts";
import { deferred, fakeHandlers, listen, MemoryLogger, Resources } from "./helpers.ts";

const resources = new Resources();
afterEach(() => resources.closeAll());

type Handlers = Partial<ServiceHandlers<typeof DeploymentService>>;
type InstallInit = MessageInitShape<typeof InstallAgentRequestSchema>;

async function start(overrides: Handlers, maxRequestStreamBytes?: number) {
  const logger = new MemoryLogger();
  const server = resources.server(new Server());
  addService(server, DeploymentService, fakeHandlers(overrides), {
    toStatus: createErrorToStatus(logger),
    logger,
    ...(maxRequestStreamBytes !== undefined && { maxRequestStreamBytes }),
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

const header: InstallInit = { payload: { case: "header", value: { sha256: "ab" } } };
function chunk(bytes: Uint8Array): InstallInit {
  return { payload: { case: "chunk", value: bytes } };
}

/** What a handler's request iterator did: the messages it delivered and how it ended. */
async function drain(requests: AsyncIterable<{ payload: { case: string | undefined } }>) {
  const seen: (string | undefined)[] = [];
  try {
    for await (const request of requests) seen.push(request.payload.case);
    return { seen, ended: "end" as const };
  } catch (error) {
    return { seen, ended: error };
  }
}

describe("client-streaming calls", () => {
  it("marks the method as a request stream in the service definition", () => {
    const definition = createServiceDefinition(DeploymentService);
    expect(definition.installAgent?.requestStream).toBe(true);
    expect(definition.installAgent?.responseStream).toBe(false);
  });

  it("delivers the requests in order and answers with the handler's response", async () => {
    const { client } = await start({
      installAgent: async (requests) => {
        const bytes: number[] = [];
        for await (const request of requests) {
          if (request.payload.case === "chunk") bytes.push(...request.payload.value);
        }
        return { outcome: bytes.length === 3 ? InstallOutcome.INSTALLED : InstallOutcome.REPLACED };
      },
    });
    async function* requests() {
      yield header;
      yield chunk(new Uint8Array([1]));
      yield chunk(new Uint8Array([2, 3]));
    }
    const response = await client.installAgent(requests());
    expect(response.outcome).toBe(InstallOutcome.INSTALLED);
    // A plain iterable works as well.
    expect((await client.installAgent([header, chunk(new Uint8Array([9, 9, 9]))])).outcome).toBe(
      InstallOutcome.INSTALLED,
    );
  });

  it("answers with the mapped status when the handler refuses early, and stops sending", async () => {
    const { client } = await start({
      installAgent: async (requests) => {
        for await (const _ of requests) {
          throw new DeployError("PACKAGE_INVALID", "not an archive");
        }
        return {};
      },
    });
    let pulled = 0;
    async function* endless() {
      yield header;
      for (;;) {
        pulled++;
        yield chunk(new Uint8Array(64 * 1024));
      }
    }
    const error = await rpcError(client.installAgent(endless()));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.reason).toBe("PACKAGE_INVALID");
    expect(error.details).toBe("not an archive");
    // The client stopped pulling once the status came (HTTP/2 windows bound what ran ahead).
    const afterStatus = pulled;
    await nextTurn();
    expect(pulled).toBe(afterStatus);
    expect(pulled).toBeLessThan(10_000);
  });

  it("refuses a stream past maxRequestStreamBytes with REQUEST_TOO_LARGE while it streams", async () => {
    const outcome = deferred<Awaited<ReturnType<typeof drain>>>();
    const { client } = await start(
      {
        installAgent: async (requests) => {
          const result = await drain(requests);
          outcome.resolve(result);
          throw result.ended;
        },
      },
      100 * 1024,
    );
    let pulled = 0;
    async function* big() {
      yield header;
      for (let i = 0; i < 1000; i++) {
        pulled++;
        yield chunk(new Uint8Array(16 * 1024));
      }
    }
    const error = await rpcError(client.installAgent(big()));
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(error.reason).toBe("REQUEST_TOO_LARGE");
    const { seen, ended } = await outcome.promise;
    expect(ended).toBeInstanceOf(DeployError);
    // 100 KiB is 6 chunks of 16 KiB and a bit: the 7th passes the limit and is never delivered.
    expect(seen).toEqual(["header", "chunk", "chunk", "chunk", "chunk", "chunk", "chunk"]);
    expect(pulled).toBeLessThan(1000);
  });

  it("throws the abort reason into the handler when the client cancels mid-stream", async () => {
    const outcome = deferred<Awaited<ReturnType<typeof drain>>>();
    const gotFirst = deferred();
    const { client } = await start({
      installAgent: async (requests, context) => {
        const result = await drain(
          (async function* () {
            for await (const request of requests) {
              gotFirst.resolve();
              yield request;
            }
          })(),
        );
        outcome.resolve(result);
        expect(context.signal.aborted).toBe(true);
        return {};
      },
    });
    const controller = new AbortController();
    async function* slow() {
      yield header;
      await gotFirst.promise;
      controller.abort();
      // Never finishes by itself: only the cancel ends the call.
      await new Promise(() => {});
    }
    const error = await rpcError(client.installAgent(slow(), { signal: controller.signal }));
    expect(error.code).toBe(status.CANCELLED);
    const { seen, ended } = await outcome.promise;
    expect(seen).toEqual(["header"]);
    expect((ended as DOMException).name).toBe("AbortError");
  });

  it("cancels, never half-closes, when the client's request source throws", async () => {
    const outcome = deferred<Awaited<ReturnType<typeof drain>>>();
    const gotFirst = deferred();
    const { client } = await start({
      installAgent: async (requests) => {
        const result = await drain(
          (async function* () {
            for await (const request of requests) {
              gotFirst.resolve();
              yield request;
            }
          })(),
        );
        outcome.resolve(result);
        return { outcome: InstallOutcome.INSTALLED };
      },
    });
    const broken = new Error("disk read failed");
    async function* failing() {
      yield header;
      yield chunk(new Uint8Array([1, 2, 3]));
      await gotFirst.promise;
      throw broken;
    }
    const error = await rpcError(client.installAgent(failing()));
    expect(error.code).toBe(status.CANCELLED);
    expect(error.cause).toBe(broken);
    const { ended } = await outcome.promise;
    // The handler saw an interrupted stream, not a complete one.
    expect((ended as DOMException).name).toBe("AbortError");
  });

  it("answers a request that does not decode with INVALID_ARGUMENT", async () => {
    const outcome = deferred<Awaited<ReturnType<typeof drain>>>();
    const { address } = await start({
      installAgent: async (requests) => {
        const result = await drain(requests);
        outcome.resolve(result);
        throw result.ended;
      },
    });
    const raw = resources.client(new Client(address, credentials.createInsecure()));
    const valid = Buffer.from(
      toBinary(InstallAgentRequestSchema, create(InstallAgentRequestSchema, header)),
    );
    const error = await new Promise<ServiceError>((resolve, reject) => {
      const call = raw.makeClientStreamRequest(
        "/atoll.deployment.v1.DeploymentService/InstallAgent",
        (bytes: Buffer) => bytes,
        (bytes: Buffer) => bytes,
        new Metadata(),
        {},
        (err) => (err === null ? reject(new Error("call succeeded")) : resolve(err)),
      );
      call.write(valid);
      // Field 2 (chunk), length-delimited, claims 100 bytes but carries 1.
      call.write(Buffer.from([0x12, 0x64, 0x41]));
      call.end();
    });
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(decodeErrorInfo(error.metadata)?.reason).toBe("INVALID_ARGUMENT");
    expect(error.details).toContain("atoll.deployment.v1.InstallAgentRequest");
    expect((await outcome.promise).seen).toEqual(["header"]);
  });

  it("fails without calling when the signal is already aborted", async () => {
    let called = false;
    const { client } = await start({
      installAgent: async () => {
        called = true;
        return {};
      },
    });
    const error = await rpcError(client.installAgent([header], { signal: AbortSignal.abort() }));
    expect(error.code).toBe(status.CANCELLED);
    expect(called).toBe(false);
  });
});
