import { Client, credentials, Metadata, Server, status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import {
  bearerToken,
  checkAuthorization,
  createBearerAuthInterceptor,
  tokensEqual,
} from "../../src/rpc/auth.ts";
import { createErrorToStatus } from "../../src/rpc/error-mapping.ts";
import { addService } from "../../src/rpc/grpc-adapter.ts";
import { createClient, RpcError } from "../../src/rpc/grpc-client.ts";
import { addHealthAndReflection } from "../../src/rpc/health-and-reflection.ts";
import type { CallContext } from "../../src/rpc/service-handlers.ts";
import { fakeHandlers, listen, MemoryLogger, Resources } from "./helpers.ts";

const resources = new Resources();
afterEach(() => resources.closeAll());

const TOKEN = "s3cret-token-value";

async function start() {
  const seen: CallContext[] = [];
  const refused: [string, number][] = [];
  const observer = {
    started: () => () => undefined,
    refused: (path: string, code: number) => refused.push([path, code]),
  };
  const server = resources.server(
    new Server({ interceptors: [createBearerAuthInterceptor({ token: TOKEN, observer })] }),
  );
  addService(
    server,
    DeploymentService,
    fakeHandlers({
      getStatus: async (request, context) => {
        seen.push(context);
        return { agent: { name: request.name } };
      },
    }),
    { toStatus: createErrorToStatus(new MemoryLogger()) },
  );
  addHealthAndReflection(server, [DeploymentService]);
  const address = await listen(server);
  const client = resources.client(
    createClient(DeploymentService, address, credentials.createInsecure()),
  );
  return { address, client, seen, refused };
}

async function rpcError(promise: Promise<unknown>): Promise<RpcError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RpcError);
  return error as RpcError;
}

describe("bearer auth", () => {
  it("lets a call with the right token through, without showing the token to the handler", async () => {
    const { client, seen } = await start();
    const response = await client.getStatus(
      { name: "a" },
      { metadata: { authorization: `Bearer ${TOKEN}` } },
    );
    expect(response.agent?.name).toBe("a");
    expect(seen[0]?.metadata.get("authorization")).toEqual([]);
  });

  it.each([
    ["no header", {}],
    ["a wrong token", { authorization: "Bearer wrong" }],
    ["a token prefix", { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
    ["another scheme", { authorization: `Basic ${TOKEN}` }],
  ])("refuses %s with UNAUTHENTICATED before the handler runs", async (_label, metadata) => {
    const { client, seen, refused } = await start();
    const error = await rpcError(client.getStatus({ name: "a" }, { metadata }));
    expect(error.code).toBe(status.UNAUTHENTICATED);
    expect(error.reason).toBe("UNAUTHENTICATED");
    expect(seen).toEqual([]);
    expect(refused).toEqual([
      ["/atoll.deployment.v1.DeploymentService/GetStatus", status.UNAUTHENTICATED],
    ]);
  });

  it("refuses a streaming call without the token", async () => {
    const { client } = await start();
    const error = await rpcError(
      (async () => {
        for await (const _event of client.watchHealth({})) {
          // No event is expected.
        }
      })(),
    );
    expect(error.code).toBe(status.UNAUTHENTICATED);
  });

  it("exempts the health service", async () => {
    const { address } = await start();
    const raw = resources.client(new Client(address, credentials.createInsecure()));
    // HealthCheckRequest{service: ""} is the empty message.
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      raw.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (value: Buffer) => value,
        (value: Buffer) => value,
        Buffer.alloc(0),
        new Metadata(),
        {},
        (error, response) => (error === null && response ? resolve(response) : reject(error)),
      );
    });
    // HealthCheckResponse{status: SERVING (1)}.
    expect([...bytes]).toEqual([0x08, 0x01]);
  });

  it("parses the header and compares tokens", () => {
    const metadata = new Metadata();
    metadata.set("authorization", "bearer abc ");
    expect(bearerToken(metadata)).toBe("abc");
    expect(bearerToken(new Metadata())).toBeUndefined();
    expect(tokensEqual("abc", "abc")).toBe(true);
    expect(tokensEqual("abc", "abcd")).toBe(false);
    expect(tokensEqual("", "abc")).toBe(false);
    expect(() => createBearerAuthInterceptor({ token: "" })).toThrow(TypeError);
  });

  it("checks a raw header value the same way for every transport", () => {
    expect(checkAuthorization(`Bearer ${TOKEN}`, TOKEN)).toBeUndefined();
    expect(checkAuthorization(`bearer\t${TOKEN} `, TOKEN)).toBeUndefined();
    expect(checkAuthorization(undefined, TOKEN)).toMatchObject({
      code: "UNAUTHENTICATED",
      message: "missing bearer token in the authorization header",
    });
    expect(checkAuthorization(null, TOKEN)?.code).toBe("UNAUTHENTICATED");
    expect(checkAuthorization(`Basic ${TOKEN}`, TOKEN)?.code).toBe("UNAUTHENTICATED");
    expect(checkAuthorization("Bearer nope", TOKEN)).toMatchObject({
      code: "UNAUTHENTICATED",
      message: "invalid bearer token",
    });
  });
});
