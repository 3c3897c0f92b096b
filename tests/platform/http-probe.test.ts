import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { probeHttp } from "../../src/platform/http-probe.ts";

interface TestServer {
  readonly server: Server;
  readonly port: number;
  /** Sockets the server accepted that are not closed yet. */
  readonly open: Set<Socket>;
}

const servers: TestServer[] = [];

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(async ({ server, open }) => {
      for (const socket of open) socket.destroy();
      if (!server.listening) return;
      server.close();
      await once(server, "close");
    }),
  );
});

async function serve(
  host: string,
  handler: Parameters<typeof createServer>[1] = (_req, res) => res.end("ok"),
): Promise<TestServer> {
  const server = createServer(handler);
  const open = new Set<Socket>();
  server.on("connection", (socket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
  });
  server.listen(0, host);
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  const entry = { server, port: address.port, open };
  servers.push(entry);
  return entry;
}

/** A port nothing listens on: bound, read and closed. */
async function closedPort(host: string): Promise<number> {
  const { server, port } = await serve(host);
  server.close();
  await once(server, "close");
  return port;
}

/** Resolves once the server has no open connection left. */
async function allClosed(entry: TestServer): Promise<void> {
  while (entry.open.size > 0) {
    const [socket] = entry.open;
    if (socket !== undefined) await once(socket, "close");
  }
}

describe("probeHttp", () => {
  it("reports a 2xx on 127.0.0.1 as healthy and leaves no connection open", async () => {
    const entry = await serve("127.0.0.1", (req, res) => {
      res.writeHead(req.url === "/status" ? 200 : 404, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", padding: "x".repeat(100_000) }));
    });
    const result = await probeHttp({
      host: "127.0.0.1",
      port: entry.port,
      path: "/status",
      timeoutMs: 2000,
    });
    expect(result).toMatchObject({ ok: true, status: 200, message: "HTTP 200" });
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
    await allClosed(entry);
  });

  it("reports a non-2xx status as unhealthy", async () => {
    const entry = await serve("127.0.0.1", (_req, res) => {
      res.statusCode = 503;
      res.end("starting");
    });
    const result = await probeHttp({
      host: "127.0.0.1",
      port: entry.port,
      path: "/",
      timeoutMs: 2000,
    });
    expect(result).toMatchObject({ ok: false, status: 503, message: "HTTP 503" });
    await allClosed(entry);
  });

  it("reaches an agent on localhost whether it bound 127.0.0.1 or ::1", async () => {
    const v4 = await serve("127.0.0.1");
    const v6 = await serve("::1");
    for (const { port } of [v4, v6]) {
      const result = await probeHttp({ host: "localhost", port, path: "/status", timeoutMs: 2000 });
      expect(result).toMatchObject({ ok: true, message: "HTTP 200" });
    }
    const literal = await probeHttp({ host: "[::1]", port: v6.port, path: "/", timeoutMs: 2000 });
    expect(literal.ok).toBe(true);
    await allClosed(v4);
    await allClosed(v6);
  });

  it("reports connection refused", async () => {
    const port = await closedPort("127.0.0.1");
    for (const host of ["127.0.0.1", "localhost"]) {
      const result = await probeHttp({ host, port, path: "/status", timeoutMs: 2000 });
      expect(result).toMatchObject({ ok: false, message: "connection refused" });
      expect(result.status).toBeUndefined();
    }
  });

  it("times out on a server that never answers and closes the connection", async () => {
    const entry = await serve("127.0.0.1", () => {
      // Never responds.
    });
    const result = await probeHttp({
      host: "127.0.0.1",
      port: entry.port,
      path: "/",
      timeoutMs: 150,
    });
    expect(result).toMatchObject({ ok: false, message: "timed out after 150 ms" });
    expect(result.latencyMs).toBeGreaterThanOrEqual(140);
    await allClosed(entry);
  });

  it("rejects with the abort reason when its signal aborts", async () => {
    const entry = await serve("127.0.0.1", () => {
      // Never responds.
    });
    const controller = new AbortController();
    const probing = probeHttp({
      host: "127.0.0.1",
      port: entry.port,
      path: "/",
      timeoutMs: 60_000,
      signal: controller.signal,
    });
    controller.abort(new Error("stop probing"));
    await expect(probing).rejects.toThrow("stop probing");
    await allClosed(entry);
    await expect(
      probeHttp({
        host: "127.0.0.1",
        port: entry.port,
        path: "/",
        timeoutMs: 10,
        signal: controller.signal,
      }),
    ).rejects.toThrow("stop probing");
  });
});
