import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  DeployRequestSchema,
  DeployResponseSchema,
  GetStatusRequestSchema,
  GetStatusResponseSchema,
  StreamLogsRequestSchema,
  StreamLogsResponseSchema,
  WatchEventType,
  WatchHealthRequestSchema,
  WatchHealthResponseSchema,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { DeployError } from "../../src/core/errors.ts";
import { startHttpServer } from "../../src/http/http-server.ts";
import { createErrorToStatus } from "../../src/rpc/error-mapping.ts";
import type { CallContext } from "../../src/rpc/service-handlers.ts";
import { fakeHandlers, MemoryLogger } from "../rpc/helpers.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { connectJson, Stack, startHttpStack } from "./helpers.ts";
import {
  allEnvelopes,
  type ConnectErrorJson,
  connectErrorInfo,
  decode,
  envelope,
  grpcWebTrailers,
  readEnvelopes,
  SERVICE,
  statusDetailsErrorInfo,
} from "./wire.ts";

const stack = new Stack();
afterEach(() => stack.closeAll());

const AGENTS = {
  a: faultAgentToml("a"),
  // A definition that does not validate: Deploy is refused with AGENT_CONFIG_INVALID.
  broken: '[agent]\nname = "broken"\n\n[deployment]\nport = "x"\n',
};

function watchRequest(init: { resumeAfterRevision?: bigint } = {}): Uint8Array<ArrayBuffer> {
  return envelope(toBinary(WatchHealthRequestSchema, create(WatchHealthRequestSchema, init)));
}

describe("the DeploymentService over the Connect protocol", () => {
  it("answers a JSON unary call with the same handlers as gRPC", async () => {
    const { url, grpc } = await startHttpStack(stack, AGENTS);
    const { status, json } = await connectJson(url, "ListAgents", {});
    expect(status).toBe(200);
    const agents = json.agents as { name: string; state: string }[];
    expect(agents.map((a) => [a.name, a.state])).toEqual([
      ["a", "AGENT_STATE_DISCOVERED"],
      ["broken", "AGENT_STATE_INVALID"],
    ]);
    expect(agents.map((a) => a.name)).toEqual(
      (await grpc.listAgents({})).agents.map((a) => a.name),
    );
  });

  it("answers binary unary calls: Deploy starts the agent, GetStatus sees it", async () => {
    const { url } = await startHttpStack(stack, AGENTS);
    const deploy = await fetch(`${url}${SERVICE}/Deploy`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: toBinary(DeployRequestSchema, create(DeployRequestSchema, { name: "a" })),
    });
    expect(deploy.status).toBe(200);
    expect(deploy.headers.get("content-type")).toBe("application/proto");
    const deployed = fromBinary(DeployResponseSchema, new Uint8Array(await deploy.arrayBuffer()));
    expect(deployed.agent?.state).toBe(AgentState.RUNNING);
    expect(deployed.agent?.pid).toBeGreaterThan(0);
    const { json } = await connectJson(url, "GetStatus", { name: "a" });
    expect(json.agent).toMatchObject({
      name: "a",
      state: "AGENT_STATE_RUNNING",
      pid: deployed.agent?.pid,
    });
    const stopped = await connectJson(url, "Undeploy", { name: "a" });
    expect(stopped.json.agent).toMatchObject({ state: "AGENT_STATE_STOPPED" });
  });

  it("sends a refusal's code, message and ErrorInfo in the Connect error body", async () => {
    const { url } = await startHttpStack(stack, AGENTS);
    const invalid = await connectJson(url, "Deploy", { name: "broken" });
    expect(invalid.status).toBe(400);
    const error = invalid.json as unknown as ConnectErrorJson;
    expect(error.code).toBe("failed_precondition");
    expect(error.message).toMatch(/deployment\.port/);
    expect(connectErrorInfo(error)).toMatchObject({
      reason: "AGENT_CONFIG_INVALID",
      domain: "atoll.deploy",
      metadata: { agent: "broken" },
    });
    const missing = await connectJson(url, "GetStatus", { name: "nope" });
    expect(missing.status).toBe(404);
    expect(connectErrorInfo(missing.json as unknown as ConnectErrorJson)?.reason).toBe(
      "AGENT_NOT_FOUND",
    );
    // A binary call's error is the same JSON body.
    const binary = await fetch(`${url}${SERVICE}/GetStatus`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: toBinary(GetStatusRequestSchema, create(GetStatusRequestSchema, { name: "../x" })),
    });
    expect(binary.status).toBe(400);
    const body = (await binary.json()) as ConnectErrorJson;
    expect(body.code).toBe("invalid_argument");
    expect(connectErrorInfo(body)?.reason).toBe("INVALID_AGENT_NAME");
  });

  it("streams WatchHealth: snapshot, marker, then each change as it happens, and resumes", async () => {
    const { url, grpc, observer } = await startHttpStack(stack, AGENTS);
    const controller = new AbortController();
    const response = await fetch(`${url}${SERVICE}/WatchHealth`, {
      method: "POST",
      headers: { "content-type": "application/connect+proto" },
      body: watchRequest(),
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/connect+proto");
    const events = readEnvelopes(response.body);
    const next = async () => {
      const item = await events.next();
      if (item.done === true) throw new Error("the stream ended");
      expect(item.value.flags).toBe(0);
      return decode(WatchHealthResponseSchema, item.value);
    };
    const snapshot = [await next(), await next()];
    expect(snapshot.map((e) => [e.type, e.agent?.name])).toEqual([
      [WatchEventType.SNAPSHOT, "a"],
      [WatchEventType.SNAPSHOT, "broken"],
    ]);
    const marker = await next();
    expect(marker.type).toBe(WatchEventType.SNAPSHOT_COMPLETE);
    // A change made through gRPC reaches the Connect watcher.
    const deployed = grpc.deploy({ name: "a" });
    const starting = await next();
    expect(starting).toMatchObject({
      type: WatchEventType.CHANGE,
      agent: { name: "a", state: AgentState.STARTING },
    });
    expect(starting.revision).toBeGreaterThan(marker.revision);
    const running = await next();
    expect(running.agent?.state).toBe(AgentState.RUNNING);
    await deployed;
    controller.abort();
    await events.return(undefined).catch(() => undefined);
    await observer.endedCalls(1);
    expect(observer.ended).toEqual([{ method: "WatchHealth", code: 1 }]);

    // Resuming after the STARTING change replays RUNNING and nothing before it, no snapshot.
    const resumed = await fetch(`${url}${SERVICE}/WatchHealth`, {
      method: "POST",
      headers: { "content-type": "application/connect+proto" },
      body: watchRequest({ resumeAfterRevision: starting.revision }),
    });
    const replay = readEnvelopes(resumed.body);
    const first = await replay.next();
    if (first.done === true) throw new Error("the resumed stream ended");
    const replayed = decode(WatchHealthResponseSchema, first.value);
    expect(replayed).toMatchObject({ type: WatchEventType.CHANGE, revision: running.revision });
    await replay.return(undefined);
  });

  it("ends open streams with UNAVAILABLE when the server begins to drain", async () => {
    const { url, rpc, http } = await startHttpStack(stack, AGENTS);
    const response = await fetch(`${url}${SERVICE}/WatchHealth`, {
      method: "POST",
      headers: { "content-type": "application/connect+proto" },
      body: watchRequest(),
    });
    const items: { flags: number; data: Uint8Array }[] = [];
    for await (const item of readEnvelopes(response.body)) {
      items.push(item);
      if (
        item.flags === 0 &&
        decode(WatchHealthResponseSchema, item).type === WatchEventType.SNAPSHOT_COMPLETE
      ) {
        rpc.beginDrain();
      }
    }
    const end = items.at(-1);
    expect(end?.flags).toBe(2);
    const { error } = JSON.parse(Buffer.from(end?.data ?? []).toString()) as {
      error: ConnectErrorJson;
    };
    expect(error.code).toBe("unavailable");
    expect(connectErrorInfo(error)?.reason).toBe("SERVER_SHUTTING_DOWN");
    await http.close(2000);
    await expect(fetch(`${url}/`)).rejects.toThrow();
  });

  it("refuses a request message over the 4 MiB limit of the gRPC listener", async () => {
    const { url } = await startHttpStack(stack, AGENTS);
    const { status, json } = await connectJson(url, "GetStatus", {
      name: "x".repeat(5 * 1024 * 1024),
    });
    expect(status).toBe(429);
    expect(json.code).toBe("resource_exhausted");
  });
});

describe("the DeploymentService over gRPC-Web", () => {
  async function grpcWeb(url: string, method: string, body: Uint8Array) {
    const response = await fetch(`${url}${SERVICE}/${method}`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: envelope(body),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/grpc-web+proto");
    const frames = await allEnvelopes(response);
    const trailerFrame = frames.find((f) => (f.flags & 0x80) !== 0);
    // Errors may come as a trailers-only response (status in the HTTP headers, no body).
    const trailers =
      trailerFrame === undefined
        ? new Map([...response.headers].filter(([k]) => k.startsWith("grpc-")))
        : grpcWebTrailers(trailerFrame);
    return { data: frames.filter((f) => (f.flags & 0x80) === 0), trailers };
  }

  it("frames a unary answer and its trailers, and puts ErrorInfo in grpc-status-details-bin", async () => {
    const { url } = await startHttpStack(stack, AGENTS);
    const ok = await grpcWeb(
      url,
      "GetStatus",
      toBinary(GetStatusRequestSchema, create(GetStatusRequestSchema, { name: "a" })),
    );
    expect(ok.trailers.get("grpc-status")).toBe("0");
    expect(ok.data).toHaveLength(1);
    expect(decode(GetStatusResponseSchema, ok.data[0] as never).agent?.name).toBe("a");

    const refused = await grpcWeb(
      url,
      "GetStatus",
      toBinary(GetStatusRequestSchema, create(GetStatusRequestSchema, { name: "nope" })),
    );
    expect(refused.data).toHaveLength(0);
    expect(refused.trailers.get("grpc-status")).toBe("5");
    expect(decodeURIComponent(refused.trailers.get("grpc-message") ?? "")).toBe(
      "agent nope not found",
    );
    expect(statusDetailsErrorInfo(refused.trailers.get("grpc-status-details-bin"))?.reason).toBe(
      "AGENT_NOT_FOUND",
    );
  });

  it("streams StreamLogs as data frames, then an OK trailer", async () => {
    const { url, grpc } = await startHttpStack(stack, AGENTS);
    await grpc.deploy({ name: "a" });
    const { data, trailers } = await grpcWeb(
      url,
      "StreamLogs",
      toBinary(
        StreamLogsRequestSchema,
        create(StreamLogsRequestSchema, { name: "a", tailLines: 20 }),
      ),
    );
    expect(trailers.get("grpc-status")).toBe("0");
    const lines = data.flatMap((frame) => decode(StreamLogsResponseSchema, frame).lines);
    expect(lines.some((line) => line.startsWith("READY "))).toBe(true);
  });
});

describe("the Connect adapter", () => {
  async function serveFake(overrides: Parameters<typeof fakeHandlers>[0]) {
    const logger = new MemoryLogger();
    const http = await startHttpServer({
      listen: "127.0.0.1:0",
      api: { handlers: fakeHandlers(overrides), toStatus: createErrorToStatus(logger) },
      logger,
    });
    stack.add(() => http.close(1000));
    return { url: http.url, logger };
  }

  it("answers an unexpected error with a generic INTERNAL and logs the cause", async () => {
    const { url, logger } = await serveFake({
      getStatus: async () => {
        throw new Error("secret detail of the failure");
      },
      deploy: async () => {
        throw new DeployError("AGENT_START_TIMEOUT", "a: not healthy within 1 s", { agent: "a" });
      },
    });
    const failed = await connectJson(url, "GetStatus", { name: "a" });
    expect(failed.status).toBe(500);
    expect(failed.json).toEqual({ code: "internal", message: "internal error" });
    expect(JSON.stringify(failed.json)).not.toContain("secret");
    expect(logger.lines).toContainEqual(
      expect.objectContaining({
        level: "error",
        msg: "unexpected error in RPC handler",
        fields: expect.objectContaining({ method: `${SERVICE}/GetStatus` }),
      }),
    );
    const timedOut = await connectJson(url, "Deploy", { name: "a" });
    expect(timedOut.status).toBe(504);
    expect(connectErrorInfo(timedOut.json as unknown as ConnectErrorJson)?.reason).toBe(
      "AGENT_START_TIMEOUT",
    );
  });

  it("gives handlers the call's headers without the token, its deadline and its peer", async () => {
    const seen: CallContext[] = [];
    const { url } = await serveFake({
      getStatus: async (request, context) => {
        seen.push(context);
        return { agent: { name: request.name } };
      },
    });
    const { status } = await connectJson(
      url,
      "GetStatus",
      { name: "a" },
      { "x-request-id": "r-1", authorization: "Bearer abc", "connect-timeout-ms": "60000" },
    );
    expect(status).toBe(200);
    const context = seen[0];
    expect(context?.method.name).toBe("GetStatus");
    expect(context?.metadata.get("x-request-id")).toEqual(["r-1"]);
    expect(context?.metadata.get("authorization")).toEqual([]);
    expect(context?.peer).toMatch(/^ipv4:127\.0\.0\.1:\d+$/);
    const left = (context?.deadline?.getTime() ?? 0) - Date.now();
    expect(left).toBeGreaterThan(50_000);
    expect(left).toBeLessThanOrEqual(60_000);
    expect(context?.signal.aborted).toBe(false);
  });
});
