/**
 * Test helper: a stand-in Ollama server on 127.0.0.1:0 that records `POST /api/generate`
 * requests and answers as the test says, plus a temporary HOME holding the
 * `.ollama_server/.ollama_config.json` that points at it.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** How the stand-in answers one generate request. */
export type FakeReply =
  | { readonly kind: "json"; readonly status: number; readonly body: unknown }
  | { readonly kind: "text"; readonly status: number; readonly body: string }
  /** Never answer (until the server closes). */
  | { readonly kind: "hang" };

export interface FakeOllama {
  readonly port: number;
  /** Parsed JSON bodies of the generate requests received, in order. */
  readonly requests: unknown[];
  /** Resolves when the next generate request has arrived (with its parsed body). */
  nextRequest(): Promise<unknown>;
  close(): Promise<void>;
}

export async function startFakeOllama(reply: (body: unknown) => FakeReply): Promise<FakeOllama> {
  const requests: unknown[] = [];
  const arrivals: ((body: unknown) => void)[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== "POST" || req.url !== "/api/generate") {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "not found" }));
      return;
    }
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        // Recorded as raw text so the test can see what was sent.
        body = Buffer.concat(chunks).toString("utf8");
      }
      requests.push(body);
      for (const arrived of arrivals.splice(0)) arrived(body);
      const answer = reply(body);
      if (answer.kind === "hang") return;
      const text = answer.kind === "json" ? JSON.stringify(answer.body) : answer.body;
      res.writeHead(answer.status, { "content-type": "application/json" });
      res.end(text);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    requests,
    nextRequest: () => new Promise((resolve) => arrivals.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A temporary HOME directory; `remove` deletes it. */
export interface TempHome {
  readonly dir: string;
  remove(): Promise<void>;
}

/** Creates a HOME whose `.ollama_server/.ollama_config.json` holds `config` (if given). */
export async function makeTempHome(config?: unknown): Promise<TempHome> {
  const dir = await mkdtemp(join(tmpdir(), "atoll-agent-home-"));
  if (config !== undefined) {
    await mkdir(join(dir, ".ollama_server"));
    const text = typeof config === "string" ? config : JSON.stringify(config);
    await writeFile(join(dir, ".ollama_server", ".ollama_config.json"), text);
  }
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
