/**
 * The standard side services: `grpc.health.v1.Health` (so ordinary gRPC health probes work,
 * and a draining server can say NOT_SERVING) and server reflection v1 and v1alpha (so tools
 * such as grpcurl can call the API without the .proto files). Both use the maintained grpc-js
 * implementations; reflection is fed from the protobuf-es descriptors compiled into `gen/`.
 *
 * Both libraries parse .proto text with protobufjs when loaded (several MiB of memory and tens of
 * milliseconds of start-up), so they are loaded only when a health or reflection call arrives
 * (`lazy-service.ts`); until then only their method paths are registered.
 */
import { createRequire } from "node:module";
import { create, type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import type { Server } from "@grpc/grpc-js";
import type { MessageTypeDefinition, PackageDefinition } from "@grpc/proto-loader";
import type { HealthImplementation } from "grpc-health-check";
import { file_health_v1_health } from "../../gen/health/v1/health_pb.ts";
import { addLazyServices, type ServiceSink } from "./lazy-service.ts";

// The libraries are CommonJS: loaded synchronously at the first call (serializers are sync).
const require = createRequire(import.meta.url);
const loadHealth = (): typeof import("grpc-health-check") => require("grpc-health-check");
const loadProtoLoader = (): typeof import("@grpc/proto-loader") => require("@grpc/proto-loader");
const loadReflection = (): typeof import("@grpc/reflection") => require("@grpc/reflection");

/** Fully qualified name of the gRPC health service. */
export const HEALTH_SERVICE_NAME = "grpc.health.v1.Health";

/** A status the health service reports (`SERVICE_UNKNOWN` is produced by Watch itself). */
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING";

/**
 * `grpc.health.v1.Health` for this server: one status shared by the overall server (`""`) and
 * each named service. Check of any other name is NOT_FOUND; Watch streams every change.
 */
export class ServerHealth {
  /** Built at the first health call, with the status of that moment. */
  #implementation: HealthImplementation | undefined;
  readonly #serviceNames: readonly string[];
  #status: ServingStatus;

  /**
   * @param serviceNames fully qualified names reported besides `""`
   *   (for example `atoll.deployment.v1.DeploymentService`).
   * @param initial the status until changed; default SERVING.
   */
  constructor(serviceNames: readonly string[], initial: ServingStatus = "SERVING") {
    this.#serviceNames = ["", ...serviceNames.filter((name) => name !== "")];
    this.#status = initial;
  }

  /** The status currently reported. */
  get status(): ServingStatus {
    return this.#status;
  }

  /** Reports `status` for the server and every service, notifying open Watch streams. */
  setStatus(status: ServingStatus): void {
    this.#status = status;
    for (const name of this.#serviceNames) this.#implementation?.setStatus(name, status);
  }

  /** Reports SERVING. */
  setServing(): void {
    this.setStatus("SERVING");
  }

  /** Reports NOT_SERVING: call when draining, so load balancers and probes stop sending calls. */
  setNotServing(): void {
    this.setStatus("NOT_SERVING");
  }

  /** Registers the health service on `server` (before `bindAsync`). */
  addToServer(server: Pick<Server, "addService">): void {
    const service = `/${HEALTH_SERVICE_NAME}`;
    addLazyServices(
      server,
      [
        { path: `${service}/Check`, requestStream: false, responseStream: false },
        { path: `${service}/Watch`, requestStream: false, responseStream: true },
        { path: `${service}/List`, requestStream: false, responseStream: false },
      ],
      (sink) => {
        const { HealthImplementation } = loadHealth();
        const initial = Object.fromEntries(this.#serviceNames.map((name) => [name, this.#status]));
        this.#implementation = new HealthImplementation(initial);
        this.#implementation.addToServer(sink as unknown as Server);
      },
    );
  }
}

/**
 * The file descriptors of `files` and everything they import, each once, every file after its
 * dependencies (the order a FileDescriptorSet consumer expects).
 */
export function collectFileDescriptors(files: readonly DescFile[]): FileDescriptorProto[] {
  const ordered = new Map<string, FileDescriptorProto>();
  const visit = (file: DescFile): void => {
    if (ordered.has(file.proto.name)) return;
    for (const dependency of file.dependencies) visit(dependency);
    ordered.set(file.proto.name, file.proto);
  };
  for (const file of files) visit(file);
  return [...ordered.values()];
}

/**
 * The proto-loader package definition reflection answers from: `files` with their imports, plus
 * the health service.
 *
 * proto-loader re-derives descriptors through protobufjs, which merges the files of a package
 * and drops their imports (grpc-node#2595): a client such as grpcurl then cannot resolve
 * `google.protobuf.Timestamp`. So every loaded definition carries the compiler's own
 * descriptors (names, imports and fully qualified type names intact) instead.
 */
export function createReflectionPackageDefinition(files: readonly DescFile[]): PackageDefinition {
  // health.proto is compiled by buf into gen/ like our own API (buf.gen.yaml), so its
  // descriptor is the compiler's and strict clients such as buf curl can link it.
  const descriptors = collectFileDescriptors([...files, file_health_v1_health]);
  const set = create(FileDescriptorSetSchema, { file: descriptors });
  const loaded = loadProtoLoader().loadFileDescriptorSetFromBuffer(
    Buffer.from(toBinary(FileDescriptorSetSchema, set)),
  );
  const encoded = descriptors.map((file) => Buffer.from(toBinary(FileDescriptorProtoSchema, file)));
  const definition: PackageDefinition = {};
  for (const [name, entry] of Object.entries(loaded)) {
    definition[name] =
      "fileDescriptorProtos" in entry && Array.isArray(entry.fileDescriptorProtos)
        ? { ...(entry as MessageTypeDefinition<object, object>), fileDescriptorProtos: encoded }
        : entry;
  }
  return definition;
}

/**
 * Adds reflection v1 and v1alpha to `server`, describing `services` (their files and imports)
 * and the health service. Every service in those files is listed by `list_services`, plus
 * `grpc.health.v1.Health`.
 */
export function addReflection(
  server: Pick<Server, "addService">,
  services: readonly DescService[],
): void {
  addLazyServices(
    server,
    ["v1", "v1alpha"].map((version) => ({
      path: `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      requestStream: true,
      responseStream: true,
    })),
    (sink: ServiceSink) => {
      const definition = createReflectionPackageDefinition(services.map((service) => service.file));
      const { ReflectionService } = loadReflection();
      new ReflectionService(definition).addToServer(sink as unknown as Server);
    },
  );
}

/**
 * Adds health (SERVING for `""` and each of `services`) and reflection to `server`; returns the
 * health handle the server lifecycle flips to NOT_SERVING when draining.
 */
export function addHealthAndReflection(
  server: Server,
  services: readonly DescService[],
): ServerHealth {
  const health = new ServerHealth(services.map((service) => service.typeName));
  health.addToServer(server);
  addReflection(server, services);
  return health;
}
