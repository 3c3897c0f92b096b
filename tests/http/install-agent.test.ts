/**
 * InstallAgent (client streaming) over the Connect protocol on the HTTP listener: the same
 * handler and the same total-size bound as on gRPC, an upload sent as one enveloped request body
 * by a plain HTTP client.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  InstallAgentRequestSchema,
  InstallAgentResponseSchema,
  InstallOutcome,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { withPackages } from "../../src/core/agent-backend.ts";
import { systemClock } from "../../src/core/clock.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { startHttpServer } from "../../src/http/http-server.ts";
import { startRpcServer } from "../../src/rpc/server.ts";
import { packageToml, sha256, tarGz } from "../packages/archives.ts";
import { createPackageHarness, EMPTY_TREE, FAULT_COMMAND } from "../packages/harness.ts";
import { RecordingObserver, Stack } from "./helpers.ts";
import {
  allEnvelopes,
  type ConnectErrorJson,
  connectErrorInfo,
  decode,
  envelope,
  SERVICE,
} from "./wire.ts";

const stack = new Stack();
afterEach(() => stack.closeAll());

async function setup(maxRequestStreamBytes?: number) {
  const h = await createPackageHarness();
  stack.add(() => h.close());
  const rpc = await startRpcServer({
    backend: withPackages(h.registry, h.store),
    clock: systemClock,
    logger: silentLogger,
    listen: "127.0.0.1:0",
  });
  stack.add(async () => {
    rpc.beginDrain();
    await rpc.close(1000);
  });
  const observer = new RecordingObserver();
  const http = await startHttpServer({
    listen: "127.0.0.1:0",
    api: { ...rpc.api, ...(maxRequestStreamBytes !== undefined && { maxRequestStreamBytes }) },
    logger: silentLogger,
    observer,
  });
  stack.add(() => http.close(1000));
  return { h, url: http.url, observer };
}

/** The header then the archive in `chunkBytes` pieces, each an enveloped InstallAgentRequest. */
function uploadBody(archive: Buffer, start: boolean, chunkBytes = 1000): Buffer {
  const messages = [
    create(InstallAgentRequestSchema, {
      payload: {
        case: "header",
        value: { sha256: sha256(archive), sizeBytes: BigInt(archive.length), start },
      },
    }),
  ];
  for (let at = 0; at < archive.length; at += chunkBytes) {
    messages.push(
      create(InstallAgentRequestSchema, {
        payload: { case: "chunk", value: archive.subarray(at, at + chunkBytes) },
      }),
    );
  }
  return Buffer.concat(messages.map((m) => envelope(toBinary(InstallAgentRequestSchema, m))));
}

function greeter(): Buffer {
  return tarGz([
    { name: "greeter/", type: "Directory" },
    { name: "greeter/agent.toml", content: packageToml(undefined, FAULT_COMMAND) },
  ]);
}

const install = (url: string, body: Buffer) =>
  fetch(`${url}${SERVICE}/InstallAgent`, {
    method: "POST",
    headers: { "content-type": "application/connect+proto" },
    body: new Uint8Array(body),
  });

describe("InstallAgent over Connect", () => {
  it("installs and starts a package uploaded in chunks, like over gRPC", async () => {
    const { h, url, observer } = await setup();
    const response = await install(url, uploadBody(greeter(), true));
    expect(response.status).toBe(200);
    const frames = await allEnvelopes(response);
    expect(frames.map((f) => f.flags)).toEqual([0, 2]);
    const answer = decode(InstallAgentResponseSchema, frames[0] as never);
    expect(answer.outcome).toBe(InstallOutcome.INSTALLED);
    expect(answer.agent).toMatchObject({ name: "greeter", state: AgentState.RUNNING });
    expect(observer.ended).toEqual([{ method: "InstallAgent", code: 0 }]);
    await h.registry.undeploy("greeter");
  });

  it("refuses a stream over the total bound with REQUEST_TOO_LARGE and leaves nothing behind", async () => {
    const { h, url } = await setup(4000);
    const archive = Buffer.concat([greeter(), Buffer.alloc(8000, 1)]);
    const frames = await allEnvelopes(await install(url, uploadBody(archive, false)));
    const end = frames.at(-1);
    expect(end?.flags).toBe(2);
    const { error } = JSON.parse(Buffer.from(end?.data ?? []).toString()) as {
      error: ConnectErrorJson;
    };
    expect(error.code).toBe("resource_exhausted");
    expect(connectErrorInfo(error)).toMatchObject({
      reason: "REQUEST_TOO_LARGE",
      metadata: { limit_bytes: "4000" },
    });
    expect(await h.tree()).toEqual(EMPTY_TREE);
  });
});
