import { randomBytes } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { credentials, status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { AgentSource, AgentState, PackageFormat } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  DeploymentService,
  type InstallAgentRequestSchema,
  InstallOutcome,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { withPackages } from "../../src/core/agent-backend.ts";
import { systemClock } from "../../src/core/clock.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { createClient, RpcError, type ServiceClient } from "../../src/rpc/grpc-client.ts";
import { type RpcServer, startRpcServer } from "../../src/rpc/server.ts";
import { packageToml, sha256, tarGz } from "../packages/archives.ts";
import {
  createPackageHarness,
  EMPTY_TREE,
  FAULT_COMMAND,
  type PackageHarness,
} from "../packages/harness.ts";

let h: PackageHarness | undefined;
let server: RpcServer | undefined;
let client: ServiceClient<typeof DeploymentService> | undefined;

afterEach(async () => {
  client?.close();
  server?.beginDrain();
  await server?.close(1000);
  await h?.close();
  h = undefined;
  server = undefined;
  client = undefined;
});

async function setup(options: { token?: string; packages?: boolean } = {}) {
  h = await createPackageHarness();
  const authToken = options.token;
  server = await startRpcServer({
    backend: options.packages === false ? h.registry : withPackages(h.registry, h.store),
    clock: systemClock,
    logger: silentLogger,
    listen: "127.0.0.1:0",
    authToken,
  });
  client = createClient(DeploymentService, server.address, credentials.createInsecure());
  return { h, client };
}

type Request = MessageInitShape<typeof InstallAgentRequestSchema>;

function requests(
  archive: Buffer,
  header: Record<string, unknown> = {},
  chunkBytes = 1000,
): Request[] {
  const out: Request[] = [
    {
      payload: {
        case: "header",
        value: { sha256: sha256(archive), sizeBytes: BigInt(archive.length), ...header },
      },
    },
  ];
  for (let at = 0; at < archive.length; at += chunkBytes) {
    out.push({ payload: { case: "chunk", value: archive.subarray(at, at + chunkBytes) } });
  }
  return out;
}

async function rpcError(promise: Promise<unknown>): Promise<RpcError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RpcError);
  return error as RpcError;
}

function greeter(version = "1"): Buffer {
  return tarGz([
    { name: "greeter/", type: "Directory" },
    { name: "greeter/agent.toml", content: packageToml(undefined, FAULT_COMMAND) },
    { name: "greeter/VERSION", content: version },
  ]);
}

describe("InstallAgent and RemoveAgent over gRPC", () => {
  it("installs an archive sent in chunks, names its source, then answers ALREADY_INSTALLED", async () => {
    const { client } = await setup();
    const archive = greeter();
    const first = await client.installAgent(requests(archive, { start: true }));
    expect(first.outcome).toBe(InstallOutcome.INSTALLED);
    expect(first.agent?.state).toBe(AgentState.RUNNING);
    expect(first.agent?.source).toBe(AgentSource.PACKAGE);
    expect(first.agent?.installedPackage?.sha256).toBe(sha256(archive));
    expect(first.agent?.installedPackage?.format).toBe(PackageFormat.TAR_GZ);
    const again = await client.installAgent(
      requests(archive, { sha256: sha256(archive).toUpperCase() }),
    );
    expect(again.outcome).toBe(InstallOutcome.ALREADY_INSTALLED);
    const listed = await client.listAgents({});
    expect(listed.agents.map((a) => [a.name, a.source])).toEqual([
      ["greeter", AgentSource.PACKAGE],
    ]);

    const removed = await client.removeAgent({ name: "greeter" });
    expect(removed.agent?.state).toBe(AgentState.STOPPED);
    expect((await client.listAgents({})).agents).toEqual([]);
    expect(await h?.tree()).toEqual(EMPTY_TREE);
  });

  it("needs the token like every RPC when one is configured", async () => {
    const { client } = await setup({ token: "s3cret" });
    const refused = await rpcError(client.installAgent(requests(greeter())));
    expect(refused.code).toBe(status.UNAUTHENTICATED);
    expect(await h?.tree()).toEqual(EMPTY_TREE);
    const removeRefused = await rpcError(client.removeAgent({ name: "greeter" }));
    expect(removeRefused.code).toBe(status.UNAUTHENTICATED);
    const metadata = { authorization: "Bearer s3cret" };
    const ok = await client.installAgent(requests(greeter()), { metadata });
    expect(ok.outcome).toBe(InstallOutcome.INSTALLED);
    expect((await client.removeAgent({ name: "greeter" }, { metadata })).agent?.name).toBe(
      "greeter",
    );
  });

  it("leaves nothing behind when the client cancels mid-upload, and keeps serving", async () => {
    const { client } = await setup();
    const archive = tarGz([
      { name: "greeter/", type: "Directory" },
      { name: "greeter/agent.toml", content: packageToml(undefined, FAULT_COMMAND) },
      // Incompressible, so the archive is far larger than the three messages sent.
      { name: "greeter/blob", content: randomBytes(512 * 1024) },
    ]);
    const all = requests(archive, {}, 4096);
    const controller = new AbortController();
    async function* cut() {
      for (const [index, request] of all.entries()) {
        if (index === 3) {
          controller.abort();
          return;
        }
        yield request;
      }
    }
    const error = await rpcError(client.installAgent(cut(), { signal: controller.signal }));
    expect(error.code).toBe(status.CANCELLED);
    await expect.poll(() => h?.tree()).toEqual(EMPTY_TREE);
    expect((await client.installAgent(requests(greeter()))).outcome).toBe(InstallOutcome.INSTALLED);
  });

  it("refuses a malformed stream: no header first, a bad checksum field, a second header", async () => {
    const { client } = await setup();
    const noHeader = await rpcError(
      client.installAgent([{ payload: { case: "chunk", value: new Uint8Array([1]) } }]),
    );
    expect(noHeader.code).toBe(status.INVALID_ARGUMENT);
    expect(noHeader.details).toMatch(/first message must be a header/);
    const badSha = await rpcError(client.installAgent(requests(greeter(), { sha256: "abc" })));
    expect(badSha.code).toBe(status.INVALID_ARGUMENT);
    expect(badSha.details).toMatch(/64 hex digits/);
    const twice = requests(greeter());
    const header = twice[0];
    if (header === undefined) throw new Error("no header");
    const secondHeader = await rpcError(client.installAgent([header, header]));
    expect(secondHeader.details).toMatch(/only the first message may be a header/);
    expect(await h?.tree()).toEqual(EMPTY_TREE);
  });

  it("answers PACKAGE_INVALID with INVALID_ARGUMENT and the cause", async () => {
    const { client } = await setup();
    const evil = tarGz([
      { name: "greeter/agent.toml", content: packageToml(undefined, FAULT_COMMAND) },
      { name: "greeter/../../x", content: "x" },
    ]);
    const error = await rpcError(client.installAgent(requests(evil)));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.reason).toBe("PACKAGE_INVALID");
    expect(error.details).toMatch(/leaves the package/);
    const big = await rpcError(client.installAgent(requests(greeter(), { sizeBytes: 1n << 40n })));
    expect(big.reason).toBe("PACKAGE_INVALID");
    expect(big.details).toMatch(/larger than max_package_bytes/);
  });

  it("answers UNIMPLEMENTED (NOT_SUPPORTED) when the backend cannot install", async () => {
    const { client } = await setup({ packages: false });
    const error = await rpcError(client.installAgent(requests(greeter())));
    expect(error.code).toBe(status.UNIMPLEMENTED);
    expect(error.reason).toBe("NOT_SUPPORTED");
    expect((await rpcError(client.removeAgent({ name: "x" }))).reason).toBe("NOT_SUPPORTED");
  });
});
