import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import { request as httpsRequest } from "node:https";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { GetStatusRequestSchema } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { parseHostPort, startHttpServer } from "../../src/http/http-server.ts";
import { createErrorToStatus } from "../../src/rpc/error-mapping.ts";
import { fakeHandlers } from "../rpc/helpers.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { connectJson, rawRequest, Stack, startHttpStack } from "./helpers.ts";
import {
  type ConnectErrorJson,
  connectErrorInfo,
  envelope,
  grpcWebTrailers,
  SERVICE,
} from "./wire.ts";

const stack = new Stack();
afterEach(() => stack.closeAll());

const AGENTS = { a: faultAgentToml("a") };
const TOKEN = "t0ken-for-http-tests";

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-http-"));
  stack.add(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe("authentication on the HTTP listener", () => {
  it("needs the gRPC listener's token for API calls and /metrics, but not for the page", async () => {
    const metrics = { contentType: "text/plain; version=0.0.4", scrape: async () => "up 1\n" };
    const { url, observer } = await startHttpStack(stack, AGENTS, { token: TOKEN, metrics });
    const missing = await connectJson(url, "ListAgents", {});
    expect(missing.status).toBe(401);
    expect(missing.json).toMatchObject({
      code: "unauthenticated",
      message: "missing bearer token in the authorization header",
    });
    expect(connectErrorInfo(missing.json as unknown as ConnectErrorJson)?.reason).toBe(
      "UNAUTHENTICATED",
    );
    const wrong = await connectJson(url, "ListAgents", {}, { authorization: "Bearer nope" });
    expect(wrong.json.message).toBe("invalid bearer token");
    const right = await connectJson(url, "ListAgents", {}, { authorization: `Bearer ${TOKEN}` });
    expect(right.status).toBe(200);
    expect(observer.refusedCalls).toEqual([
      { path: `${SERVICE}/ListAgents`, code: 16 },
      { path: `${SERVICE}/ListAgents`, code: 16 },
    ]);

    const grpcWeb = await fetch(`${url}${SERVICE}/GetStatus`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto" },
      body: envelope(
        toBinary(GetStatusRequestSchema, create(GetStatusRequestSchema, { name: "a" })),
      ),
    });
    const status =
      grpcWeb.headers.get("grpc-status") ??
      grpcWebTrailers({
        flags: 0x80,
        data: new Uint8Array((await grpcWeb.arrayBuffer()).slice(5)),
      }).get("grpc-status");
    expect(status).toBe("16");

    const scrape = await rawRequest(`${url}/metrics`);
    expect(scrape.status).toBe(401);
    expect(scrape.headers["www-authenticate"]).toMatch(/^Bearer/);
    const scraped = await rawRequest(`${url}/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(scraped.status).toBe(200);
    expect(scraped.body.toString()).toBe("up 1\n");
    expect((await rawRequest(`${url}/`)).status).toBe(200);
  });
});

describe("same origin only", () => {
  const call = (url: string, headers: Record<string, string>) =>
    rawRequest(`${url}${SERVICE}/ListAgents`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: "{}",
    });

  it("refuses other origins and DNS-rebound host names, and lets same-origin pages and plain clients in", async () => {
    const { url } = await startHttpStack(stack, AGENTS);
    const { port } = new URL(url);
    const foreign = await call(url, { origin: "http://evil.example" });
    expect(foreign.status).toBe(403);
    expect(foreign.headers["access-control-allow-origin"]).toBeUndefined();
    const preflight = await rawRequest(`${url}${SERVICE}/ListAgents`, {
      method: "OPTIONS",
      headers: { origin: "http://evil.example", "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers["access-control-allow-origin"]).toBeUndefined();
    const rebound = await call(url, { host: `attacker.example:${port}` });
    expect(rebound.status).toBe(403);
    expect((await call(url, { origin: url })).status).toBe(200);
    expect(
      (await call(url, { host: `localhost:${port}`, origin: `http://localhost:${port}` })).status,
    ).toBe(200);
    expect((await call(url, {})).status).toBe(200);
  });

  it("answers a configured origin with its own CORS headers, never *", async () => {
    const origin = "http://ops.example:3000";
    const { url } = await startHttpStack(stack, AGENTS, { corsOrigins: [origin] });
    const preflight = await rawRequest(`${url}${SERVICE}/ListAgents`, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,authorization",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe(origin);
    expect(preflight.headers["access-control-allow-headers"]).toMatch(/Authorization/);
    const answer = await call(url, { origin });
    expect(answer.status).toBe(200);
    expect(answer.headers["access-control-allow-origin"]).toBe(origin);
    expect((await call(url, { origin: "http://other.example" })).status).toBe(403);
    await expect(
      startHttpServer({
        listen: "127.0.0.1:0",
        api: { handlers: fakeHandlers({}), toStatus: createErrorToStatus(silentLogger) },
        logger: silentLogger,
        corsOrigins: ["*"],
      }),
    ).rejects.toThrow(/not an allowed CORS origin/);
  });
});

describe("the dashboard's files", () => {
  it("serves the built page with a strict CSP, revalidation, gzip and a favicon", async () => {
    const { url } = await startHttpStack(stack, AGENTS);
    const page = await rawRequest(`${url}/`);
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    const csp = page.headers["content-security-policy"] ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe");
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.body.toString()).toContain('<script type="module" src="/app.js">');
    const etag = page.headers.etag ?? "";
    expect((await rawRequest(`${url}/`, { headers: { "if-none-match": etag } })).status).toBe(304);
    const script = await rawRequest(`${url}/app.js`, {
      headers: { "accept-encoding": "gzip, br" },
    });
    expect(script.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(script.headers["content-encoding"]).toBe("gzip");
    expect(gunzipSync(script.body).length).toBeGreaterThan(script.body.length);
    const icon = await rawRequest(`${url}/favicon.ico`);
    expect(icon.status).toBe(200);
    expect(icon.headers["content-type"]).toBe("image/svg+xml");
    expect((await rawRequest(`${url}/nope`)).status).toBe(404);
    expect((await rawRequest(`${url}/`, { method: "POST", body: "x" })).status).toBe(405);
    expect(
      (await rawRequest(`${url}${SERVICE}/NoSuchMethod`, { method: "POST", body: "{}" })).status,
    ).toBe(404);
  });

  it("says how to build the page when it is not built, and still serves the API", async () => {
    const { url } = await startHttpStack(stack, AGENTS, { uiDirectory: await tempDir() });
    const page = await rawRequest(`${url}/`);
    expect(page.status).toBe(503);
    expect(page.body.toString()).toContain("npm run build:ui");
    expect((await connectJson(url, "ListAgents", {})).status).toBe(200);
  });
});

describe("the listener", () => {
  it("serves HTTPS with the TLS files of listen", async () => {
    const dir = await tempDir();
    const cert = path.join(dir, "cert.pem");
    const key = path.join(dir, "key.pem");
    await promisify(execFile)("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]);
    const { url } = await startHttpStack(stack, AGENTS, { tls: { cert, key } });
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const ca = await readFile(cert);
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest(
        `${url}${SERVICE}/ListAgents`,
        { method: "POST", ca, headers: { "content-type": "application/json" }, agent: false },
        (res) => {
          let text = "";
          res.setEncoding("utf8").on("data", (chunk: string) => {
            text += chunk;
          });
          res.on("end", () => resolve(text));
        },
      );
      req.on("error", reject);
      req.end("{}");
    });
    expect(JSON.parse(body)).toMatchObject({ agents: [{ name: "a" }] });
  });

  it("asks for a client certificate signed by tls_client_ca (mutual TLS), as on gRPC", async () => {
    const dir = await tempDir();
    const file = (name: string) => path.join(dir, name);
    const openssl = (...args: string[]) => promisify(execFile)("openssl", args);
    await openssl(
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      file("ca.key"),
      "-out",
      file("ca.pem"),
      "-days",
      "1",
      "-subj",
      "/CN=test ca",
    );
    for (const [name, extra] of [
      ["server", ["-addext", "subjectAltName=IP:127.0.0.1"]],
      ["client", []],
    ] as const) {
      await openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        file(`${name}.key`),
        "-out",
        file(`${name}.csr`),
        "-subj",
        `/CN=${name}`,
        ...extra,
      );
      await openssl(
        "x509",
        "-req",
        "-in",
        file(`${name}.csr`),
        "-CA",
        file("ca.pem"),
        "-CAkey",
        file("ca.key"),
        "-CAcreateserial",
        "-out",
        file(`${name}.pem`),
        "-days",
        "1",
        "-copy_extensions",
        "copy",
      );
    }
    const http = await startHttpServer({
      listen: "127.0.0.1:0",
      api: { handlers: fakeHandlers({}), toStatus: createErrorToStatus(silentLogger) },
      logger: silentLogger,
      tlsCert: file("server.pem"),
      tlsKey: file("server.key"),
      tlsClientCa: file("ca.pem"),
    });
    stack.add(() => http.close(1000));
    const ca = await readFile(file("ca.pem"));
    const get = (client?: { cert: Buffer; key: Buffer }) =>
      new Promise<number>((resolve, reject) => {
        const req = httpsRequest(
          `${http.url}/favicon.ico`,
          { ca, ...client, agent: false },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on("error", reject);
        req.end();
      });
    await expect(get()).rejects.toThrow();
    const cert = await readFile(file("client.pem"));
    const key = await readFile(file("client.key"));
    // This server has no dashboard: a 404 means the request got through the handshake.
    expect(await get({ cert, key })).toBe(404);
  });

  it("refuses a busy address with a one-line error naming http_listen", async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    stack.add(() => new Promise<void>((resolve) => busy.close(() => resolve())));
    const { port } = busy.address() as { port: number };
    await expect(
      startHttpServer({
        listen: `127.0.0.1:${port}`,
        api: { handlers: fakeHandlers({}), toStatus: createErrorToStatus(silentLogger) },
        logger: silentLogger,
      }),
    ).rejects.toThrow(
      new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port} \\(http_listen\\): .*EADDRINUSE`),
    );
  });

  it("reads host:port addresses, IPv6 in brackets", () => {
    expect(parseHostPort("127.0.0.1:50052")).toEqual({ host: "127.0.0.1", port: 50052 });
    expect(parseHostPort("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseHostPort("localhost:8080")).toEqual({ host: "localhost", port: 8080 });
    expect(() => parseHostPort("50052")).toThrow(/host:port/);
  });
});
