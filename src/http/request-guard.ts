/**
 * Who may talk to the HTTP listener from a browser (SPEC §9: no cross-origin access unless
 * configured). Checked before anything else, for every request:
 *
 * - **Origin**: a request carrying an `Origin` header must come from the listener's own origin
 *   (`scheme://` + its `Host` header) or from one of the configured `corsOrigins`; otherwise it
 *   is refused with 403 and no CORS header, so a page on another site can neither call the API
 *   nor read an answer. Browsers send `Origin` on every cross-origin request and on same-origin
 *   POSTs; clients that are not browsers (curl, Prometheus) send none and are let through to the
 *   token check. `Access-Control-Allow-Origin` is only ever the one configured origin that
 *   asked, never `*`.
 * - **Host** (DNS rebinding): on a loopback listener, a `Host` that is a DNS name other than
 *   `localhost` / `*.localhost` is refused with 403: that is a page on some other name resolved
 *   to 127.0.0.1, which the same-origin rule alone would let in.
 */
import { isIP } from "node:net";
import { cors } from "@connectrpc/connect";

export interface RequestGuardOptions {
  /**
   * Origins (`https://ops.example.com`, exactly as browsers send them) allowed to call the API
   * cross-origin, with CORS headers. Default: none, same-origin only.
   */
  readonly corsOrigins?: readonly string[] | undefined;
  /** True when the listener is bound to a loopback address: enables the Host check. */
  readonly loopback: boolean;
  /** `http` or `https`, for the request's own origin. */
  readonly scheme: "http" | "https";
}

/** What to do with one request. */
export type GuardVerdict =
  | {
      readonly allowed: true;
      /** Set for an allowed cross-origin request: headers to add to its response. */
      readonly corsHeaders: Readonly<Record<string, string>> | undefined;
    }
  | { readonly allowed: false; readonly status: number; readonly message: string };

/** The host name of a `Host` header value, without port and brackets. */
function hostnameOf(host: string): string {
  if (host.startsWith("[")) return host.slice(1, host.indexOf("]"));
  const colon = host.lastIndexOf(":");
  return (colon === -1 ? host : host.slice(0, colon)).toLowerCase();
}

/** True for names a browser only resolves to this machine. */
function isLocalName(hostname: string): boolean {
  return hostname === "localhost" || hostname.endsWith(".localhost") || isIP(hostname) !== 0;
}

/** True when `host` (a listen host) is a loopback address or `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith("[") ? host.slice(1, -1) : host;
  return bare === "localhost" || bare === "::1" || /^127\.\d+\.\d+\.\d+$/.test(bare);
}

/** Headers of the answer to an allowed CORS preflight (`OPTIONS`) from `origin`. */
export function preflightHeaders(origin: string): Record<string, string> {
  return {
    "access-control-allow-origin": origin,
    "access-control-allow-methods": cors.allowedMethods.join(", "),
    "access-control-allow-headers": [...cors.allowedHeaders, "Authorization"].join(", "),
    "access-control-max-age": "7200",
    vary: "Origin",
  };
}

export class RequestGuard {
  readonly #origins: ReadonlySet<string>;
  readonly #loopback: boolean;
  readonly #scheme: string;

  constructor(options: RequestGuardOptions) {
    for (const origin of options.corsOrigins ?? []) {
      if (origin === "*" || origin === "null" || !/^https?:\/\/[^/]+$/.test(origin)) {
        throw new TypeError(`not an allowed CORS origin: ${JSON.stringify(origin)}`);
      }
    }
    this.#origins = new Set(options.corsOrigins ?? []);
    this.#loopback = options.loopback;
    this.#scheme = options.scheme;
  }

  /** The verdict on a request with these `Host` and `Origin` header values. */
  check(host: string | undefined, origin: string | undefined): GuardVerdict {
    if (host === undefined || host === "") {
      return { allowed: false, status: 400, message: "missing Host header" };
    }
    if (this.#loopback && !isLocalName(hostnameOf(host))) {
      return { allowed: false, status: 403, message: `host ${host} is not allowed` };
    }
    if (origin === undefined || origin === `${this.#scheme}://${host}`) {
      return { allowed: true, corsHeaders: undefined };
    }
    if (this.#origins.has(origin)) {
      return {
        allowed: true,
        corsHeaders: {
          "access-control-allow-origin": origin,
          "access-control-expose-headers": cors.exposedHeaders.join(", "),
          vary: "Origin",
        },
      };
    }
    return { allowed: false, status: 403, message: `cross-origin request from ${origin} refused` };
  }
}
