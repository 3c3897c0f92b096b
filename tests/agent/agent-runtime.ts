/**
 * Test helper: start the real `atoll-agent` executable on 127.0.0.1:0 and talk HTTP to it.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { type Agent, request } from "node:http";
import { join } from "node:path";
import { AGENT_BIN, type ChildTracker, type RunningChild } from "./child-processes.ts";

export interface StartedAgent {
  readonly proc: RunningChild;
  readonly port: number;
  readonly host: string;
  /** `http://127.0.0.1:<port>` (or the bracketed IPv6 form). */
  readonly base: string;
}

/** Spawns `atoll-agent --server --port 0 --agent <definition> ...extraArgs`; waits until listening. */
export async function startAgent(
  tracker: ChildTracker,
  definition: string,
  options: { env?: NodeJS.ProcessEnv; extraArgs?: readonly string[] } = {},
): Promise<StartedAgent> {
  const proc = tracker.spawn(
    AGENT_BIN,
    ["--server", "--port", "0", "--agent", definition, ...(options.extraArgs ?? [])],
    options.env ? { env: options.env } : {},
  );
  const line = await proc.waitForLine(isListeningLine, "the listening line");
  const ready = JSON.parse(line) as { port: number; host: string };
  const hostPart = ready.host.includes(":") ? `[${ready.host}]` : ready.host;
  return { proc, port: ready.port, host: ready.host, base: `http://${hostPart}:${ready.port}` };
}

export function isListeningLine(line: string): boolean {
  return line.includes('"event":"listening"');
}

/** Writes `<root>/<dir>/<file>` and returns its path. */
export async function writeDefinition(
  root: string,
  dir: string,
  file: string,
  text: string,
): Promise<string> {
  await mkdir(join(root, dir), { recursive: true });
  const path = join(root, dir, file);
  await writeFile(path, text);
  return path;
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

/**
 * One HTTP request through node:http (unlike fetch, it still reports a response that arrives
 * while the request body is being refused, as with 413).
 */
export function rawRequest(
  url: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: Buffer | string | readonly Buffer[];
    agent?: Agent;
  } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let responded = false;
    const req = request(
      url,
      {
        method: options.method ?? "GET",
        headers: options.headers ?? {},
        ...(options.agent ? { agent: options.agent } : {}),
      },
      (res) => {
        responded = true;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        // "close" also covers a socket torn down right after the answer (resolve is idempotent).
        const done = () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          });
        res.on("end", done);
        res.on("close", done);
      },
    );
    req.on("error", (error: NodeJS.ErrnoException) => {
      // Writing the rest of a refused body fails with EPIPE/ECONNRESET after the answer came.
      if (!responded) reject(error);
    });
    const body = options.body;
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else {
      req.end(body as Buffer | string | undefined);
    }
  });
}
