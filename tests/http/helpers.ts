/**
 * The real stack for the HTTP tests: a supervisor on fault agents (the harness), the gRPC server
 * over it, and the HTTP listener mounting the gRPC server's API; plus a plain HTTP client that
 * can set any header (Host, Origin), and teardown of everything a test started.
 */

import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import type { DescMethod } from "@bufbuild/protobuf";
import { credentials } from "@grpc/grpc-js";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { systemClock } from "../../src/core/clock.ts";
import { silentLogger } from "../../src/core/logger.ts";
import {
  type HttpServer,
  type MetricsSource,
  startHttpServer,
} from "../../src/http/http-server.ts";
import { DEFAULT_UI_DIRECTORY } from "../../src/http/static-assets.ts";
import type { CallObserver } from "../../src/rpc/call-observer.ts";
import { createClient, type ServiceClient } from "../../src/rpc/grpc-client.ts";
import { type RpcServer, startRpcServer } from "../../src/rpc/server.ts";
import { createHarness, type Harness } from "../supervisor/harness.ts";

/** Everything one test started; `closeAll()` in afterEach stops it, newest first. */
export class Stack {
  readonly #closers: (() => Promise<void> | void)[] = [];

  add(close: () => Promise<void> | void): void {
    this.#closers.push(close);
  }

  async closeAll(): Promise<void> {
    const errors: unknown[] = [];
    for (const close of this.#closers.splice(0).reverse()) {
      try {
        await close();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw errors[0];
  }
}

/** A CallObserver that records each ended call and lets a test wait for the n-th. */
export class RecordingObserver implements CallObserver {
  readonly ended: { method: string; code: number }[] = [];
  readonly refusedCalls: { path: string; code: number }[] = [];
  #waiters: { count: number; resolve: () => void }[] = [];

  started(method: DescMethod) {
    return (code: number) => {
      this.ended.push({ method: method.name, code });
      this.#waiters = this.#waiters.filter((w) => {
        if (this.ended.length < w.count) return true;
        w.resolve();
        return false;
      });
    };
  }

  refused(path: string, code: number): void {
    this.refusedCalls.push({ path, code });
  }

  /** Resolves once `count` calls have ended. */
  endedCalls(count: number): Promise<void> {
    if (this.ended.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }
}

export interface HttpStack {
  readonly harness: Harness;
  readonly rpc: RpcServer;
  readonly http: HttpServer;
  readonly url: string;
  readonly grpc: ServiceClient<typeof DeploymentService>;
  readonly observer: RecordingObserver;
}

export interface HttpStackOptions {
  readonly token?: string;
  readonly corsOrigins?: readonly string[];
  readonly metrics?: MetricsSource;
  readonly uiDirectory?: string;
  readonly tls?: { cert: string; key: string };
}

/** The harness over `agents`, a gRPC server and the HTTP listener, all torn down by `stack`. */
export async function startHttpStack(
  stack: Stack,
  agents: Record<string, string>,
  options: HttpStackOptions = {},
): Promise<HttpStack> {
  const harness = await createHarness(agents);
  stack.add(() => harness.close());
  const authToken = options.token;
  const observer = new RecordingObserver();
  const rpc = await startRpcServer({
    backend: harness.registry,
    clock: systemClock,
    logger: silentLogger,
    listen: "127.0.0.1:0",
    authToken,
  });
  stack.add(async () => {
    rpc.beginDrain();
    await rpc.close(1000);
  });
  const http = await startHttpServer({
    listen: "127.0.0.1:0",
    api: rpc.api,
    logger: silentLogger,
    authToken,
    observer,
    metrics: options.metrics,
    uiDirectory: options.uiDirectory ?? DEFAULT_UI_DIRECTORY,
    corsOrigins: options.corsOrigins,
    tlsCert: options.tls?.cert,
    tlsKey: options.tls?.key,
  });
  stack.add(() => http.close(1000));
  const grpc = createClient(DeploymentService, rpc.address, credentials.createInsecure());
  stack.add(() => grpc.close());
  return { harness, rpc, http, url: http.url, grpc, observer };
}

export interface RawResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** One HTTP/1.1 request with exactly these headers (Host and Origin included), no agent pool. */
export function rawRequest(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: Uint8Array | string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method: init.method ?? "GET", headers: init.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(init.body);
  });
}

/** POSTs a Connect unary call with a JSON body; resolves with the status and parsed JSON. */
export async function connectJson(
  url: string,
  method: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${url}/atoll.deployment.v1.DeploymentService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}
