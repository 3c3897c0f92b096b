/**
 * gRPC services registered now and built on their first call. The side services (health,
 * reflection) come from libraries that parse .proto text with protobufjs when loaded, which
 * costs the daemon several MiB of memory and start-up time for services that many deployments
 * never call. Their methods are registered up front by path, so the server routes them as usual;
 * the first message of any of them loads the library (synchronously: they are CommonJS) and
 * builds the real service, which then serves every call.
 */
import type {
  MethodDefinition,
  Server,
  ServiceDefinition,
  UntypedHandleCall,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";

/** One method of a lazily built service, as grpc-js routes it. */
export interface LazyMethod {
  /** `/package.Service/Method`. */
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/** Something that adds services to a server (a grpc-js Server, or a recorder of what it adds). */
export interface ServiceSink {
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void;
}

interface Built {
  readonly definition: MethodDefinition<unknown, unknown>;
  readonly handler: UntypedHandleCall;
}

/**
 * Registers `methods` on `server`; on the first use of any of them, `build` is called with a sink
 * that receives the real services (as a library's `addToServer(sink)` would add them), and every
 * method is served by them from then on.
 * @throws Error at the first call when `build` did not add a method of `methods`.
 */
export function addLazyServices(
  server: Pick<Server, "addService">,
  methods: readonly LazyMethod[],
  build: (sink: ServiceSink) => void,
): void {
  let built: Map<string, Built> | undefined;
  const real = (path: string): Built => {
    if (built === undefined) {
      const found = new Map<string, Built>();
      build({
        addService(service, implementation) {
          for (const [name, definition] of Object.entries(service)) {
            const handler =
              implementation[name] ??
              (definition.originalName === undefined
                ? undefined
                : implementation[definition.originalName]);
            if (handler !== undefined) {
              found.set(definition.path, { definition, handler: handler.bind(implementation) });
            }
          }
        },
      });
      built = found;
    }
    const method = built.get(path);
    if (method === undefined) throw new Error(`lazy service did not provide ${path}`);
    return method;
  };
  const byService = new Map<string, LazyMethod[]>();
  for (const method of methods) {
    const service = method.path.slice(0, method.path.lastIndexOf("/"));
    byService.set(service, [...(byService.get(service) ?? []), method]);
  }
  for (const group of byService.values()) {
    const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
    const implementation: UntypedServiceImplementation = {};
    for (const { path, requestStream, responseStream } of group) {
      const name = path.slice(path.lastIndexOf("/") + 1);
      definition[name] = {
        path,
        requestStream,
        responseStream,
        requestSerialize: (value) => real(path).definition.requestSerialize(value),
        requestDeserialize: (bytes) => real(path).definition.requestDeserialize(bytes),
        responseSerialize: (value) => real(path).definition.responseSerialize(value),
        responseDeserialize: (bytes) => real(path).definition.responseDeserialize(bytes),
      };
      // grpc-js calls a handler with the call (and, for unary and client streaming, a callback).
      implementation[name] = ((...args: [never, never]) =>
        (real(path).handler as (...a: [never, never]) => void)(...args)) as UntypedHandleCall;
    }
    server.addService(definition, implementation);
  }
}
