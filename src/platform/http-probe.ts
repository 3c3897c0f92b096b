/**
 * The HTTP health probe (SPEC §2 `health_path`): one GET on a fresh connection, 2xx is healthy.
 * No agent (no keep-alive pool): each probe opens and destroys its own socket, so nothing lingers
 * between probes and a dead agent's socket is never reused.
 */
import { createRequire } from "node:module";

// Not `import { request } from "node:http"`: Node builds the ESM namespace of node:http by
// reading every export, and its lazy `WebSocket` getter then loads undici, about 13 MiB of RSS.
// The CommonJS exports object (require) reads nothing.
const { request } = createRequire(import.meta.url)("node:http") as typeof import("node:http");

/** Options of {@link probeHttp}. */
export interface ProbeOptions {
  /** Host the agent binds. `localhost` tries 127.0.0.1, then ::1 when refused there. */
  readonly host: string;
  readonly port: number;
  /** Request path, starting with "/" (`/status`). */
  readonly path: string;
  /** Whole-probe budget in milliseconds, across both loopback attempts. */
  readonly timeoutMs: number;
  /** Aborting rejects the probe with the signal's reason and destroys the connection. */
  readonly signal?: AbortSignal;
}

/** Outcome of one probe. */
export interface ProbeResult {
  /** True for a 2xx response. */
  readonly ok: boolean;
  /** HTTP status when a response arrived. */
  readonly status?: number;
  /** "HTTP 200", "HTTP 503", "connection refused", "timed out after 500 ms"... */
  readonly message: string;
  /** Time from the start of the probe to the response headers (or the failure), in milliseconds. */
  readonly latencyMs: number;
}

/** Failures after which the other loopback address is worth a try: nothing listens, or no such address. */
const TRY_NEXT_ADDRESS = new Set(["ECONNREFUSED", "EADDRNOTAVAIL", "EAFNOSUPPORT", "ENETUNREACH"]);

const ERROR_MESSAGES: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  EADDRNOTAVAIL: "address not available",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  HPE_INVALID_CONSTANT: "invalid HTTP response",
};

type Attempt =
  | { readonly kind: "response"; readonly status: number }
  | { readonly kind: "error"; readonly code: string; readonly message: string }
  | { readonly kind: "timeout" };

/** The addresses to try, in order. */
function addressesFor(host: string): string[] {
  if (host === "localhost") return ["127.0.0.1", "::1"];
  // URL-style IPv6 literal: http.request wants it bare.
  if (host.startsWith("[") && host.endsWith("]")) return [host.slice(1, -1)];
  return [host];
}

/**
 * Probes `http://host:port/path` with one GET. Never rejects for network failures: those come back
 * as `ok: false` with a message. The body is discarded and the socket destroyed as soon as the
 * status is known.
 * @throws the abort reason when `signal` aborts.
 */
export async function probeHttp(options: ProbeOptions): Promise<ProbeResult> {
  const startMs = performance.now();
  const deadlineMs = startMs + options.timeoutMs;
  const elapsed = (): number => Math.round(performance.now() - startMs);
  options.signal?.throwIfAborted();

  let last: Attempt = { kind: "timeout" };
  for (const address of addressesFor(options.host)) {
    const remainingMs = deadlineMs - performance.now();
    if (remainingMs <= 0) {
      last = { kind: "timeout" };
      break;
    }
    last = await attempt(address, options, remainingMs);
    if (last.kind !== "error" || !TRY_NEXT_ADDRESS.has(last.code)) break;
  }

  switch (last.kind) {
    case "response":
      return {
        ok: last.status >= 200 && last.status < 300,
        status: last.status,
        message: `HTTP ${last.status}`,
        latencyMs: elapsed(),
      };
    case "timeout":
      return {
        ok: false,
        message: `timed out after ${options.timeoutMs} ms`,
        latencyMs: elapsed(),
      };
    case "error":
      return { ok: false, message: last.message, latencyMs: elapsed() };
  }
}

function attempt(address: string, options: ProbeOptions, timeoutMs: number): Promise<Attempt> {
  const { signal } = options;
  return new Promise<Attempt>((resolve, reject) => {
    let settled = false;
    const finish = (outcome: Attempt | { readonly abort: unknown }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      // Whatever happened, this connection is done: no keep-alive, no half-read body.
      req.destroy();
      if ("abort" in outcome) reject(outcome.abort);
      else resolve(outcome);
    };
    const onAbort = (): void => finish({ abort: signal?.reason });

    const req = request({
      host: address,
      port: options.port,
      path: options.path,
      method: "GET",
      agent: false,
      headers: {
        host: `${options.host}:${options.port}`,
        connection: "close",
        "user-agent": "atoll-deploy-probe",
      },
    });
    const timer = setTimeout(() => finish({ kind: "timeout" }), timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });

    req.once("response", (res) => {
      const status = res.statusCode ?? 0;
      // The body is not needed; destroying the request closes the socket and drops it.
      res.resume();
      finish({ kind: "response", status });
    });
    req.once("error", (error: NodeJS.ErrnoException) => {
      const code = error.code ?? "EUNKNOWN";
      finish({ kind: "error", code, message: ERROR_MESSAGES[code] ?? error.message });
    });
    req.end();
  });
}
