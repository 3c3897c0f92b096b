/**
 * The agent's HTTP contract (SPEC §8): `GET /status` (alias `/health`), `POST /prompt`,
 * `POST /shutdown`. Every answer is JSON; every request is logged once through `log`.
 */

import type { IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { type LlmClient, LlmError } from "./llm-client.ts";

// Not `import { createServer } from "node:http"`: Node builds the ESM namespace of node:http by
// reading every export, and its lazy `WebSocket` getter then loads undici, about 13 MiB of RSS
// in every agent. The CommonJS exports object (require) reads nothing.
const { createServer } = createRequire(import.meta.url)("node:http") as typeof import("node:http");

/** Largest accepted request body (1 MiB); larger bodies get 413 and are not buffered. */
export const MAX_BODY_BYTES = 1024 * 1024;

/**
 * After a 413 the rest of the body is read and discarded (not buffered) so the client sees the
 * answer instead of a reset; a body declared larger than this, or still arriving
 * {@link OVERSIZE_DRAIN_MS} after the answer, gets its connection closed instead.
 */
export const OVERSIZE_DRAIN_MAX_BYTES = 64 * 1024 * 1024;
export const OVERSIZE_DRAIN_MS = 5_000;

/** After aborting in-flight LLM calls on close, sockets still open this much later are destroyed. */
export const DESTROY_AFTER_ABORT_MS = 100;

/** A structured log record; `main.ts` writes each as one JSON line on stdout. */
export type LogRecord = Record<string, unknown>;

export interface AgentHttpServerOptions {
  /** Identity shown by `/status`. */
  readonly agent: { readonly name: string; readonly version: string };
  readonly llm: LlmClient;
  readonly log: (record: LogRecord) => void;
  /** Called once, after the 202 answer of `POST /shutdown` has been sent. */
  readonly onShutdownRequest: () => void;
  /** Monotonic milliseconds (default `performance.now`); uptime counts from server creation. */
  readonly nowMs?: () => number;
  /** Wall clock for log lines (default `Date.now`). */
  readonly wallClockMs?: () => number;
  /** Body limit in bytes (default {@link MAX_BODY_BYTES}). */
  readonly maxBodyBytes?: number;
}

export interface AgentHttpServer {
  /**
   * Binds `host:port` (0 = any free port) and marks the server ready.
   * @returns the bound address
   * @throws the listen error (e.g. code `EADDRINUSE`)
   */
  listen(port: number, host: string): Promise<{ readonly port: number; readonly host: string }>;
  /**
   * Stops accepting connections and closes idle keep-alive sockets at once. Requests still in
   * flight after `graceMs` have their LLM call aborted (answer 503), and sockets still open
   * {@link DESTROY_AFTER_ABORT_MS} later are destroyed. Resolves when every connection is gone.
   * Idempotent.
   */
  close(graceMs: number): Promise<void>;
  /** True between a successful `listen` and `close`. */
  readonly ready: boolean;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;
interface Route {
  readonly methods: readonly string[];
  readonly handler: Handler;
}

/** Builds the server; nothing is bound until `listen`. */
export function createAgentHttpServer(options: AgentHttpServerOptions): AgentHttpServer {
  const nowMs = options.nowMs ?? (() => performance.now());
  const wallClockMs = options.wallClockMs ?? Date.now;
  const maxBodyBytes = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const createdAtMs = nowMs();
  let ready = false;
  let closing = false;
  let closed: Promise<void> | undefined;
  let shutdownRequested = false;
  // Aborted when the close grace runs out: in-flight LLM calls end and answer 503.
  const closeController = new AbortController();

  const sendJson = (
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: OutgoingHttpHeaders = {},
  ): void => {
    const payload = Buffer.from(`${JSON.stringify(body)}\n`);
    // While closing, ask clients to drop keep-alive sockets so the server can finish.
    const connection = closing || headers.connection === "close" ? { connection: "close" } : {};
    res.writeHead(status, {
      "content-type": "application/json; charset=utf-8",
      "content-length": payload.length,
      "cache-control": "no-store",
      ...headers,
      ...connection,
    });
    res.end(payload);
  };

  const status: Handler = (_req, res) => {
    if (closing) return sendJson(res, 503, { status: "stopping", name: options.agent.name });
    if (!ready) return sendJson(res, 503, { status: "starting", name: options.agent.name });
    sendJson(res, 200, {
      status: "ok",
      name: options.agent.name,
      version: options.agent.version,
      model: options.llm.model,
      uptime_seconds: Math.round(nowMs() - createdAtMs) / 1000,
    });
  };

  const prompt: Handler = async (req, res) => {
    const body = await readBody(req, maxBodyBytes);
    if (body.kind === "too-large") return refuseOversized(req, res);
    if (body.kind === "aborted") return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.data.toString("utf8"));
    } catch {
      return sendJson(res, 400, { error: "request body is not valid JSON" });
    }
    const text =
      typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>).prompt
        : undefined;
    if (typeof text !== "string") {
      return sendJson(res, 400, { error: 'body must be a JSON object with a string "prompt"' });
    }
    if (text.trim() === "") return sendJson(res, 400, { error: '"prompt" must not be empty' });

    // Abort the LLM call when the client goes away, or when closing runs out of grace.
    const clientGone = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) clientGone.abort();
    });
    try {
      const signal = AbortSignal.any([clientGone.signal, closeController.signal]);
      const response = await options.llm.generate(text, signal);
      sendJson(res, 200, { response, model: options.llm.model });
    } catch (error) {
      if (!(error instanceof LlmError)) throw error;
      if (res.destroyed) return;
      if (error.kind === "cancelled") {
        if (closeController.signal.aborted) {
          sendJson(res, 503, { error: "agent is shutting down" }, { connection: "close" });
        }
        return;
      }
      sendJson(res, error.kind === "timeout" ? 504 : 502, {
        error: error.message,
        model: options.llm.model,
      });
    }
  };

  const refuseOversized = (req: IncomingMessage, res: ServerResponse): void => {
    const error = { error: `request body larger than ${maxBodyBytes} bytes` };
    // A client refused its `100 Continue` never sends the body; a huge one is not worth draining.
    const continueWithheld =
      /100-continue/i.test(req.headers.expect ?? "") && declaredLength(req) > maxBodyBytes;
    if (continueWithheld || declaredLength(req) > OVERSIZE_DRAIN_MAX_BYTES) {
      sendJson(res, 413, error, { connection: "close" });
      return;
    }
    // Node discards the unread rest of the body after the answer; bound how long that may take.
    res.once("finish", () => {
      if (req.complete) return;
      const timer = setTimeout(() => req.socket.destroy(), OVERSIZE_DRAIN_MS);
      timer.unref();
      req.once("end", () => clearTimeout(timer));
      req.once("close", () => clearTimeout(timer));
    });
    sendJson(res, 413, error);
  };

  const shutdown: Handler = (_req, res) => {
    res.once("finish", () => {
      if (shutdownRequested) return;
      shutdownRequested = true;
      options.onShutdownRequest();
    });
    sendJson(
      res,
      202,
      { status: "shutting down", name: options.agent.name },
      {
        connection: "close",
      },
    );
  };

  const routes = new Map<string, Route>([
    ["/status", { methods: ["GET", "HEAD"], handler: status }],
    ["/health", { methods: ["GET", "HEAD"], handler: status }],
    ["/prompt", { methods: ["POST"], handler: prompt }],
    ["/shutdown", { methods: ["POST"], handler: shutdown }],
  ]);

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const startedMs = nowMs();
    const method = req.method ?? "GET";
    const path = pathOf(req.url);
    res.once("close", () => {
      const record: LogRecord = {
        time: new Date(wallClockMs()).toISOString(),
        method,
        path,
        status: res.writableFinished ? res.statusCode : 499,
        ms: Math.round((nowMs() - startedMs) * 10) / 10,
      };
      if (!res.writableFinished) record.aborted = true;
      options.log(record);
    });

    const route = routes.get(path);
    if (route === undefined) {
      sendJson(res, 404, { error: `not found: ${path}` });
      return;
    }
    if (!route.methods.includes(method)) {
      sendJson(
        res,
        405,
        { error: `method ${method} not allowed on ${path}` },
        { allow: route.methods.join(", ") },
      );
      return;
    }
    Promise.resolve()
      .then(() => route.handler(req, res))
      .catch((error: unknown) => {
        options.log({
          time: new Date(wallClockMs()).toISOString(),
          event: "error",
          path,
          error: error instanceof Error ? error.message : String(error),
        });
        if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
        else res.destroy();
      });
  };

  const server: Server = createServer(onRequest);
  // `Expect: 100-continue`: refuse an announced oversized body before the client sends it.
  server.on("checkContinue", (req, res) => {
    if (!(pathOf(req.url) === "/prompt" && declaredLength(req) > maxBodyBytes)) {
      res.writeContinue();
    }
    onRequest(req, res);
  });

  return {
    get ready() {
      return ready && !closing;
    },
    listen(port, host) {
      return new Promise((resolve, reject) => {
        const onError = (error: Error) => {
          server.off("listening", onListening);
          reject(error);
        };
        const onListening = () => {
          server.off("error", onError);
          // Later errors (rare: e.g. EMFILE on accept) are logged, never thrown.
          server.on("error", (error) =>
            options.log({
              time: new Date(wallClockMs()).toISOString(),
              event: "error",
              error: error.message,
            }),
          );
          ready = true;
          const address = server.address() as AddressInfo;
          resolve({ port: address.port, host: address.address });
        };
        server.once("error", onError);
        server.once("listening", onListening);
        server.listen({ port, host });
      });
    },
    close(graceMs) {
      closed ??= new Promise<void>((resolve) => {
        closing = true;
        if (!server.listening) {
          resolve();
          return;
        }
        let destroy: NodeJS.Timeout | undefined;
        const grace = setTimeout(() => {
          closeController.abort();
          destroy = setTimeout(() => server.closeAllConnections(), DESTROY_AFTER_ABORT_MS);
        }, graceMs);
        server.close(() => {
          clearTimeout(grace);
          clearTimeout(destroy);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closed;
    },
  };
}

type BodyResult =
  | { readonly kind: "ok"; readonly data: Buffer }
  | { readonly kind: "too-large" }
  | { readonly kind: "aborted" };

/**
 * Reads the request body up to `limit` bytes. Over the limit (declared or actual) it stops
 * buffering at once.
 */
function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  if (declaredLength(req) > limit) return Promise.resolve({ kind: "too-large" });
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: BodyResult) => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAbort);
      req.off("close", onAbort);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        finish({ kind: "too-large" });
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish({ kind: "ok", data: Buffer.concat(chunks, size) });
    const onAbort = () => finish({ kind: "aborted" });
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", onAbort);
    req.once("close", onAbort);
  });
}

function declaredLength(req: IncomingMessage): number {
  const header = req.headers["content-length"];
  return header === undefined ? 0 : Number(header);
}

function pathOf(url: string | undefined): string {
  const raw = url ?? "/";
  const end = raw.search(/[?#]/);
  return end === -1 ? raw : raw.slice(0, end);
}
