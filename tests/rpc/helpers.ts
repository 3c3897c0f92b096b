import { type Client, type Server, ServerCredentials } from "@grpc/grpc-js";
import type { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { DeployError } from "../../src/core/errors.ts";
import type { LogFields, Logger, LogLevel } from "../../src/core/logger.ts";
import type { ServiceHandlers } from "../../src/rpc/service-handlers.ts";

/** Binds `server` to an ephemeral loopback port and returns `127.0.0.1:<port>`. */
export function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => {
      if (error !== null) reject(error);
      else resolve(`127.0.0.1:${port}`);
    });
  });
}

/** Servers and clients a test opened; `closeAll()` in afterEach closes every one. */
export class Resources {
  readonly #servers: Server[] = [];
  readonly #closers: (() => void)[] = [];

  server<T extends Server>(server: T): T {
    this.#servers.push(server);
    return server;
  }

  client<T extends { close(): void } | Client>(client: T): T {
    this.#closers.push(() => client.close());
    return client;
  }

  closeAll(): void {
    for (const close of this.#closers.splice(0)) close();
    for (const server of this.#servers.splice(0)) server.forceShutdown();
  }
}

/** A logger that keeps every line for assertions. */
export class MemoryLogger implements Logger {
  readonly lines: { level: LogLevel; msg: string; fields: LogFields | undefined }[] = [];
  debug(msg: string, fields?: LogFields): void {
    this.lines.push({ level: "debug", msg, fields });
  }
  info(msg: string, fields?: LogFields): void {
    this.lines.push({ level: "info", msg, fields });
  }
  warn(msg: string, fields?: LogFields): void {
    this.lines.push({ level: "warn", msg, fields });
  }
  error(msg: string, fields?: LogFields): void {
    this.lines.push({ level: "error", msg, fields });
  }
}

const unimplemented = (): never => {
  throw new DeployError("INVALID_ARGUMENT", "not implemented by this fake");
};

/** DeploymentService handlers that all fail, with the given ones replaced. */
export function fakeHandlers(
  overrides: Partial<ServiceHandlers<typeof DeploymentService>>,
): ServiceHandlers<typeof DeploymentService> {
  return {
    deploy: async () => unimplemented(),
    undeploy: async () => unimplemented(),
    restart: async () => unimplemented(),
    getStatus: async () => unimplemented(),
    listAgents: async () => unimplemented(),
    installAgent: async () => unimplemented(),
    removeAgent: async () => unimplemented(),
    // biome-ignore lint/correctness/useYield: a fake that fails before its first message
    streamLogs: async function* () {
      unimplemented();
    },
    // biome-ignore lint/correctness/useYield: a fake that fails before its first message
    watchHealth: async function* () {
      unimplemented();
    },
    ...overrides,
  };
}

/** A promise with its resolve function, for waiting on events inside handlers. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
