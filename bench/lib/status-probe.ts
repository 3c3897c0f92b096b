/**
 * The harness's own view of the agents: `GET /status` on each agent's port, the same code for
 * every tool, so "healthy" and "recovered" mean the same thing whoever supervises the agent.
 */
import http from "node:http";
import { delay, nowMs } from "./timing.ts";

/** What one probe saw: the HTTP status and the pid the fixture reports in its body. */
export interface StatusAnswer {
  readonly code: number;
  readonly pid: number | undefined;
}

/**
 * One `GET http://127.0.0.1:{port}/status` on a fresh connection (no keep-alive, so a restarted
 * agent is never confused with a pooled socket to the old one). Undefined when nothing answers.
 */
export function probeStatus(port: number, timeoutMs = 1_000): Promise<StatusAnswer | undefined> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: "127.0.0.1", port, path: "/status", method: "GET", agent: false, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          let pid: number | undefined;
          try {
            const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { pid?: unknown };
            if (typeof body.pid === "number") pid = body.pid;
          } catch {
            // Not the fixture's JSON: keep the code, no pid.
          }
          resolve({ code: res.statusCode ?? 0, pid });
        });
        res.on("error", () => resolve(undefined));
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(undefined));
    req.end();
  });
}

/** Probe period while waiting for a fleet (per agent, all agents probed concurrently). */
export const FLEET_POLL_MS = 25;
/** Probe period while waiting for one agent to come back after a crash. */
export const SINGLE_POLL_MS = 5;

/**
 * Resolves when every port answers 200 on /status; returns the pid each reported. Throws after
 * `timeoutMs` naming the ports still down.
 */
export async function waitAllHealthy(
  ports: readonly number[],
  options: {
    readonly timeoutMs: number;
    readonly intervalMs?: number;
    /** Aborting ends the wait early with the abort reason. */
    readonly signal?: AbortSignal;
  } = { timeoutMs: 60_000 },
): Promise<Map<number, number | undefined>> {
  const intervalMs = options.intervalMs ?? FLEET_POLL_MS;
  const deadline = nowMs() + options.timeoutMs;
  const healthy = new Map<number, number | undefined>();
  let pending = [...ports];
  while (pending.length > 0) {
    options.signal?.throwIfAborted();
    const answers = await Promise.all(pending.map((port) => probeStatus(port, 2_000)));
    const still: number[] = [];
    answers.forEach((answer, i) => {
      const port = pending[i] as number;
      if (answer?.code === 200) healthy.set(port, answer.pid);
      else still.push(port);
    });
    pending = still;
    if (pending.length === 0) break;
    if (nowMs() >= deadline) {
      throw new Error(
        `${pending.length} of ${ports.length} agents not healthy after ${options.timeoutMs} ms (ports ${pending.slice(0, 8).join(", ")}${pending.length > 8 ? ", ..." : ""})`,
      );
    }
    await delay(intervalMs);
  }
  return healthy;
}

/**
 * Resolves with the time (nowMs) when `port` answers 200 from a process other than `oldPid`.
 */
export async function waitNewProcess(
  port: number,
  oldPid: number,
  options: { readonly timeoutMs: number; readonly intervalMs?: number },
): Promise<{ readonly atMs: number; readonly pid: number | undefined }> {
  const intervalMs = options.intervalMs ?? SINGLE_POLL_MS;
  const deadline = nowMs() + options.timeoutMs;
  for (;;) {
    const answer = await probeStatus(port, 1_000);
    if (answer?.code === 200 && answer.pid !== oldPid) return { atMs: nowMs(), pid: answer.pid };
    if (nowMs() >= deadline) {
      throw new Error(
        `port ${port}: no new process answering /status after ${options.timeoutMs} ms`,
      );
    }
    await delay(intervalMs);
  }
}
