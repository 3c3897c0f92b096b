import { fileURLToPath } from "node:url";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Client, credentials, Metadata, Server } from "@grpc/grpc-js";
import { loadSync, type MessageTypeDefinition, type Options } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { afterEach, describe, expect, it } from "vitest";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import {
  addHealthAndReflection,
  collectFileDescriptors,
  HEALTH_SERVICE_NAME,
} from "../../src/rpc/health-and-reflection.ts";
import { listen, Resources } from "./helpers.ts";

const resources = new Resources();
afterEach(() => resources.closeAll());

const loaderOptions: Options = { keepCase: true, longs: String, enums: String, defaults: true };

function messageType(
  definition: ReturnType<typeof loadSync>,
  name: string,
): MessageTypeDefinition<object, object> {
  const type = definition[name];
  if (type === undefined || !("serialize" in type)) throw new Error(`no message ${name}`);
  return type as MessageTypeDefinition<object, object>;
}

// --- a minimal grpc.health.v1 client -----------------------------------------------------------

const healthDefinition = loadSync(healthProtoPath, loaderOptions);
const checkRequest = messageType(healthDefinition, "grpc.health.v1.HealthCheckRequest");
const checkResponse = messageType(healthDefinition, "grpc.health.v1.HealthCheckResponse");

function check(client: Client, service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      `/${HEALTH_SERVICE_NAME}/Check`,
      (value: object) => checkRequest.serialize(value),
      (bytes: Buffer) => checkResponse.deserialize(bytes) as { status: string },
      { service },
      new Metadata(),
      {},
      (error, response) => (error === null ? resolve(String(response?.status)) : reject(error)),
    );
  });
}

// --- a minimal reflection client (v1 or v1alpha) -----------------------------------------------

const reflectionProtoDir = fileURLToPath(
  new URL("../../node_modules/@grpc/reflection/build/proto/", import.meta.url),
);

interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

function reflect(
  client: Client,
  version: "v1" | "v1alpha",
  requests: Record<string, string>[],
): Promise<ReflectionResponse[]> {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, {
    ...loaderOptions,
    includeDirs: [reflectionProtoDir],
  });
  const pkg = `grpc.reflection.${version}`;
  const request = messageType(definition, `${pkg}.ServerReflectionRequest`);
  const response = messageType(definition, `${pkg}.ServerReflectionResponse`);
  const call = client.makeBidiStreamRequest(
    `/${pkg}.ServerReflection/ServerReflectionInfo`,
    (value: object) => request.serialize(value),
    (bytes: Buffer) => response.deserialize(bytes) as ReflectionResponse,
  );
  const responses: ReflectionResponse[] = [];
  const done = new Promise<ReflectionResponse[]>((resolve, reject) => {
    call.on("data", (message: ReflectionResponse) => responses.push(message));
    call.on("error", reject);
    call.on("end", () => resolve(responses));
  });
  for (const message of requests) call.write(message);
  call.end();
  return done;
}

async function start() {
  const server = resources.server(new Server());
  const health = addHealthAndReflection(server, [DeploymentService]);
  const address = await listen(server);
  const client = resources.client(new Client(address, credentials.createInsecure()));
  return { health, client };
}

describe("health", () => {
  it("reports SERVING for the server and the API, NOT_SERVING once draining", async () => {
    const { health, client } = await start();
    expect(await check(client, "")).toBe("SERVING");
    expect(await check(client, "atoll.deployment.v1.DeploymentService")).toBe("SERVING");
    await expect(check(client, "no.such.Service")).rejects.toMatchObject({ code: 5 });

    health.setNotServing();
    expect(health.status).toBe("NOT_SERVING");
    expect(await check(client, "")).toBe("NOT_SERVING");
    expect(await check(client, "atoll.deployment.v1.DeploymentService")).toBe("NOT_SERVING");

    health.setServing();
    expect(await check(client, "")).toBe("SERVING");
  });
});

describe("reflection", () => {
  it.each(["v1", "v1alpha"] as const)(
    "%s lists the API and the health service",
    async (version) => {
      const { client } = await start();
      const [listed] = await reflect(client, version, [{ list_services: "" }]);
      const names = listed?.list_services_response?.service.map((service) => service.name) ?? [];
      expect(names).toContain("atoll.deployment.v1.DeploymentService");
      expect(names).toContain("grpc.health.v1.Health");
    },
  );

  it("describes the API completely enough to rebuild it without the .proto files", async () => {
    const { client } = await start();
    const [found, health] = await reflect(client, "v1", [
      { file_containing_symbol: "atoll.deployment.v1.DeploymentService" },
      { file_containing_symbol: "grpc.health.v1.Health" },
    ]);
    const files = (found?.file_descriptor_response?.file_descriptor_proto ?? []).map((bytes) =>
      fromBinary(FileDescriptorProtoSchema, bytes),
    );
    const byName = new Map(files.map((file) => [file.name, file]));
    expect([...byName.keys()].sort()).toEqual([
      "atoll/deployment/v1/agent.proto",
      "atoll/deployment/v1/deployment_service.proto",
      "google/protobuf/timestamp.proto",
    ]);
    const root = files[0];
    expect(root?.name).toBe("atoll/deployment/v1/deployment_service.proto");
    if (root === undefined) return;
    // Fails on any import or type reference the response does not resolve.
    const registry = createFileRegistry(root, (name) => byName.get(name));
    const service = registry.getService("atoll.deployment.v1.DeploymentService");
    expect(service?.methods.map((method) => method.name)).toEqual(
      DeploymentService.methods.map((method) => method.name),
    );
    expect(registry.getMessage("atoll.deployment.v1.Agent")?.field.lastExit).toBeDefined();
    const [healthFile] = (health?.file_descriptor_response?.file_descriptor_proto ?? []).map(
      (bytes) => fromBinary(FileDescriptorProtoSchema, bytes),
    );
    if (healthFile === undefined) throw new Error("no descriptor for grpc.health.v1.Health");
    // The path grpc-health-check ships it under, compiled by buf into gen/health/v1.
    expect(healthFile.name).toBe("health/v1/health.proto");
    const healthRegistry = createFileRegistry(healthFile, () => undefined);
    expect(healthRegistry.getService("grpc.health.v1.Health")?.method.check).toBeDefined();
  });

  it("answers NOT_FOUND for an unknown symbol", async () => {
    const { client } = await start();
    const [answer] = await reflect(client, "v1", [{ file_containing_symbol: "no.such.Thing" }]);
    expect(answer?.error_response?.error_code).toBe(5);
  });
});

describe("collectFileDescriptors", () => {
  it("lists every import once, before the files that import it", () => {
    const names = collectFileDescriptors([DeploymentService.file, DeploymentService.file]).map(
      (file) => file.name,
    );
    expect(names).toEqual([
      "google/protobuf/timestamp.proto",
      "atoll/deployment/v1/agent.proto",
      "atoll/deployment/v1/deployment_service.proto",
    ]);
  });
});
