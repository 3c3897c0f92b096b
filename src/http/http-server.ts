/**
 * The HTTP listener of SPEC §9 (`http_listen`): one node:http (or, with TLS, node:https) server
 * that serves, on HTTP/1.1,
 *
 * - `POST /atoll.deployment.v1.DeploymentService/<Method>`: the DeploymentService over the
 *   Connect protocol (JSON and binary) and gRPC-Web, from the handler objects and the error
 *   mapping the gRPC server mounts (`RpcServer.api`), behind the same bearer-token check;
 * - `GET /metrics`: the Prometheus text format (token required when auth is on);
 * - `GET /` and the dashboard's assets (no token: they hold no data; the page asks for the token
 *   and sends it on its API calls).
 *
 * Every request first passes the `RequestGuard` (same origin only unless CORS origins are
 * configured; no DNS-rebound host names on a loopback listener). Requests are limited like the
 * gRPC listener's: 4 MiB per message each way, bodies refused outside the API.
 *
 * Lifecycle: `startHttpServer` binds and serves; open streams end with UNAVAILABLE when the gRPC
 * server's `beginDrain()` aborts the handlers' shared shutdown signal; `close(graceMs)` stops
 * accepting, waits for in-flight requests up to the grace and then cuts every connection.
 */

import { readFile } from "node:fs/promises";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { runInBackground } from "../core/background-task.ts";
import type { Logger } from "../core/logger.ts";
import { checkAuthorization } from "../rpc/auth.ts";
import type { CallObserver } from "../rpc/call-observer.ts";
import { deployErrorToStatus } from "../rpc/error-mapping.ts";
import type { DeploymentApi } from "../rpc/server.ts";
import { MAX_MESSAGE_BYTES } from "../rpc/server.ts";
import { createConnectService } from "./connect-adapter.ts";
import { peerKey } from "./connect-call-context.ts";
import { statusToConnectError } from "./connect-errors.ts";
import { isLoopbackHost, preflightHeaders, RequestGuard } from "./request-guard.ts";
import {
  acceptsGzip,
  CONTENT_SECURITY_POLICY,
  loadAssets,
  SECURITY_HEADERS,
} from "./static-assets.ts";

/** What `/metrics` serves: `AtollMetrics` in production. */
export interface MetricsSource {
  readonly contentType: string;
  scrape(): Promise<string>;
}

export interface HttpServerOptions {
  /** `host:port` (port 0 picks a free one), `[v6]:port` for IPv6. */
  readonly listen: string;
  /** The DeploymentService as the gRPC server mounts it. */
  readonly api: DeploymentApi;
  readonly logger: Logger;
  /**
   * The token of `auth_token_file`, read once by the composition root for both listeners; when
   * set, the API and `/metrics` need `authorization: Bearer <token>`.
   */
  readonly authToken?: string | undefined;
  /** TLS files of `listen`: with both, HTTPS; with a client CA, clients need a certificate. */
  readonly tlsCert?: string | undefined;
  readonly tlsKey?: string | undefined;
  readonly tlsClientCa?: string | undefined;
  /** Served at `/metrics`; without it `/metrics` is 404. */
  readonly metrics?: MetricsSource | undefined;
  /** Told of every API call and its status code (the same observer as the gRPC server's). */
  readonly observer?: CallObserver | undefined;
  /**
   * Directory of the built dashboard (`npm run build:ui`). Missing or unbuilt: `/` answers 503
   * saying so, the API and `/metrics` work as usual.
   */
  readonly uiDirectory?: string | undefined;
  /** Origins allowed to call the API cross-origin (CORS). Default: none. */
  readonly corsOrigins?: readonly string[] | undefined;
}

/** A listening HTTP server. */
export interface HttpServer {
  /** Base URL with the bound port: `http://127.0.0.1:50052`. */
  readonly url: string;
  /** True when the dashboard's files were found and are served. */
  readonly dashboard: boolean;
  /** Stops accepting, waits for in-flight requests up to `graceMs`, then closes every connection. */
  close(graceMs: number): Promise<void>;
}

/** Splits `host:port` / `[v6]:port` into the host to bind and the port. */
export function parseHostPort(listen: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const host = match?.[1] ?? match?.[2];
  if (host === undefined) throw new Error(`not a host:port address: ${listen}`);
  return { host, port: Number(match?.[3]) };
}

/** The client's address as grpc-js writes peers: `ipv4:127.0.0.1:53124`, `ipv6:[::1]:53124`. */
function peerOf(socket: Socket): string {
  const address = socket.remoteAddress ?? "unknown";
  return socket.remoteFamily === "IPv6"
    ? `ipv6:[${address}]:${socket.remotePort}`
    : `ipv4:${address}:${socket.remotePort}`;
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers });
  res.end(`${body}\n`);
}

const NOT_BUILT =
  "the dashboard is not built: run `npm run build:ui` in the atoll-deploy checkout, then restart the server";

/** Builds, binds and starts the HTTP listener. Rejects with a one-line error when the address is busy. */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const { logger } = options;
  const { host, port } = parseHostPort(options.listen);
  const token = options.authToken;
  if (token === "") throw new TypeError("the bearer token must not be empty");
  const tls = await readTls(options);
  const scheme = tls === undefined ? "http" : "https";
  const guard = new RequestGuard({
    corsOrigins: options.corsOrigins,
    loopback: isLoopbackHost(host),
    scheme,
  });
  const assets =
    options.uiDirectory === undefined ? undefined : await loadAssets(options.uiDirectory);
  if (options.uiDirectory !== undefined && assets === undefined) {
    logger.warn("dashboard not built: / answers 503 until `npm run build:ui`", {
      uiDirectory: options.uiDirectory,
    });
  }

  const connect = connectNodeAdapter({
    routes: (router) => {
      router.service(
        DeploymentService,
        createConnectService(DeploymentService, options.api.handlers, {
          toStatus: options.api.toStatus,
          logger,
          observer: options.observer,
          maxRequestStreamBytes: options.api.maxRequestStreamBytes,
        }),
      );
    },
    // gRPC proper needs HTTP/2 and has its own listener; this one is for browsers and HTTP/1.1.
    grpc: false,
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    // The token is checked once the headers are in, before any request byte is read.
    ...(token !== undefined && {
      requestGate: (ctx) => {
        const error = checkAuthorization(ctx.requestHeader.get("authorization"), token);
        if (error === undefined) return;
        const status = deployErrorToStatus(error);
        options.observer?.refused(`/${ctx.service.typeName}/${ctx.method.name}`, status.code);
        throw statusToConnectError(status);
      },
    }),
    contextValues: (req) => createContextValues().set(peerKey, peerOf(req.socket)),
    // This listener is node:http(s) only, so requests are IncomingMessage / ServerResponse.
    fallback: (nodeReq, nodeRes) => {
      const req = nodeReq as IncomingMessage;
      const res = nodeRes as unknown as ServerResponse;
      // A failure is logged with the path and the request answered 500 (or cut, when the
      // answer had started).
      runInBackground(
        {
          logger,
          fields: { path: req.url },
          onFailure: () => {
            if (!res.headersSent) send(res, 500, "internal error");
            else res.destroy();
          },
        },
        "HTTP request",
        () => serveOther(req, res),
      );
    },
  });

  async function serveOther(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const pathname = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const method = req.method ?? "GET";
    if (method !== "GET" && method !== "HEAD") {
      // Only the RPC paths take a body (and connect-node has answered those): here, 405 for a
      // path that exists, 404 for one that does not (an unknown RPC among them).
      const exists = pathname === "/metrics" || pathname === "/" || assets?.has(pathname) === true;
      if (exists) send(res, 405, "method not allowed", { allow: "GET, HEAD" });
      else send(res, 404, "not found");
      return;
    }
    if (pathname === "/metrics") {
      if (options.metrics === undefined) {
        send(res, 404, "not found");
        return;
      }
      if (token !== undefined) {
        const error = checkAuthorization(req.headers.authorization, token);
        if (error !== undefined) {
          send(res, 401, error.message, { "www-authenticate": 'Bearer realm="atoll-deploy"' });
          return;
        }
      }
      const text = await options.metrics.scrape();
      res.writeHead(200, {
        "content-type": options.metrics.contentType,
        "cache-control": "no-store",
      });
      res.end(method === "HEAD" ? undefined : text);
      return;
    }
    if (assets === undefined) {
      if (pathname === "/" || pathname === "/index.html") send(res, 503, NOT_BUILT);
      else send(res, 404, "not found");
      return;
    }
    const asset = assets.get(pathname);
    if (asset === undefined) {
      send(res, 404, "not found");
      return;
    }
    const headers: Record<string, string> = {
      "content-type": asset.contentType,
      "content-security-policy": CONTENT_SECURITY_POLICY,
      "cache-control": "no-cache",
      etag: asset.etag,
      vary: "Accept-Encoding",
    };
    if (req.headers["if-none-match"] === asset.etag) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const gzip = asset.gzip !== undefined && acceptsGzip(req.headers["accept-encoding"]);
    const body = gzip ? asset.gzip : asset.body;
    if (gzip) headers["content-encoding"] = "gzip";
    headers["content-length"] = String(body?.length ?? 0);
    res.writeHead(200, headers);
    res.end(method === "HEAD" ? undefined : body);
  }

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    const origin = req.headers.origin;
    const verdict = guard.check(req.headers.host, origin);
    if (!verdict.allowed) {
      // Drain nothing: a refused request's body is not read; the connection is not reused.
      send(res, verdict.status, verdict.message, { connection: "close" });
      return;
    }
    if (req.method === "OPTIONS") {
      // Reaching here, a preflight is from an allowed cross-origin (same-origin needs none).
      if (origin === undefined || verdict.corsHeaders === undefined) {
        send(res, 405, "method not allowed", { allow: "GET, HEAD, POST" });
      } else {
        res.writeHead(204, preflightHeaders(origin));
        res.end();
      }
      return;
    }
    for (const [name, value] of Object.entries(verdict.corsHeaders ?? {})) {
      res.setHeader(name, value);
    }
    connect(req, res);
  };

  const server: Server =
    tls === undefined
      ? createHttpServer({ maxHeaderSize: 16 * 1024 }, listener)
      : createHttpsServer({ ...tls, maxHeaderSize: 16 * 1024 }, listener);
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void =>
      reject(new Error(`cannot listen on ${options.listen} (http_listen): ${error.message}`));
    server.once("error", onError);
    server.listen({ host, port }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", (error: unknown) => logger.error("HTTP server error", { error }));
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    // Malformed requests and resets: answer 400 if the socket still can take it, never crash.
    logger.debug("HTTP client error", { code: error.code });
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    else socket.destroy();
  });
  const bound = server.address() as AddressInfo;
  const shownHost = bound.family === "IPv6" || host.includes(":") ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `${scheme}://${shownHost}:${bound.port}`,
    dashboard: assets !== undefined,
    close(graceMs) {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        // Keep-alive connections with no request in flight would hold close() open.
        server.closeIdleConnections();
        // Connections finishing a response later are idle then; close them too.
        server.on("request", (_req, res: ServerResponse) => {
          res.setHeader("connection", "close");
        });
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        sweep.unref();
        server.once("close", () => clearInterval(sweep));
      });
      return closing;
    },
  };
}

async function readTls(
  options: HttpServerOptions,
): Promise<
  | { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean }
  | undefined
> {
  if (options.tlsCert === undefined && options.tlsKey === undefined) return undefined;
  if (options.tlsCert === undefined || options.tlsKey === undefined) {
    throw new Error("tls_cert and tls_key must be given together");
  }
  const [cert, key, ca] = await Promise.all([
    readFile(options.tlsCert),
    readFile(options.tlsKey),
    options.tlsClientCa === undefined ? undefined : readFile(options.tlsClientCa),
  ]);
  // With a client CA, clients must present a certificate signed by it (mutual TLS), as on gRPC.
  return {
    cert,
    key,
    ...(ca !== undefined && { ca }),
    requestCert: ca !== undefined,
    rejectUnauthorized: ca !== undefined,
  };
}
