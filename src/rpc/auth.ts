/**
 * Bearer-token authentication (SPEC §3 `auth_token_file`). The check itself is
 * transport-neutral (`checkAuthorization`, one `authorization` header value against the token,
 * compared in constant time): the grpc-js server interceptor here and the HTTP listener
 * (`src/http/`) both use it, so both answer UNAUTHENTICATED (ErrorInfo reason `UNAUTHENTICATED`)
 * with the same messages before any handler runs. Health checks are exempt so standard probes
 * keep working.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import {
  type Metadata,
  ResponderBuilder,
  ServerInterceptingCall,
  type ServerInterceptor,
  ServerListenerBuilder,
} from "@grpc/grpc-js";
import { DeployError } from "../core/errors.ts";
import type { CallObserver } from "./call-observer.ts";
import { deployErrorToStatus } from "./error-mapping.ts";
import { HEALTH_SERVICE_NAME } from "./health-and-reflection.ts";

export interface BearerAuthOptions {
  /** The expected token (already trimmed of the token file's trailing newline). Must not be empty. */
  readonly token: string;
  /** Fully qualified services callable without a token. Default: `grpc.health.v1.Health`. */
  readonly exemptServices?: readonly string[];
  /** Told of every call refused for want of the right token (the metrics hook). */
  readonly observer?: CallObserver;
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * True when `presented` equals `expected`, in time independent of where they differ: both are
 * hashed first, so `timingSafeEqual` always compares 32 equal-length bytes and the length of the
 * secret does not leak either.
 */
export function tokensEqual(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The token of an `authorization` header value `Bearer <token>`, or undefined when absent or not Bearer. */
export function bearerTokenOf(header: string | null | undefined): string | undefined {
  if (typeof header !== "string") return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1];
}

/** The token of an `authorization: Bearer <token>` header, or undefined when absent or not Bearer. */
export function bearerToken(metadata: Metadata): string | undefined {
  const value = metadata.get("authorization")[0];
  return typeof value === "string" ? bearerTokenOf(value) : undefined;
}

/**
 * The one authentication check of every transport: undefined when the `authorization` header
 * value carries `token`, else the UNAUTHENTICATED error to answer with.
 */
export function checkAuthorization(
  header: string | null | undefined,
  token: string,
): DeployError | undefined {
  const presented = bearerTokenOf(header);
  if (presented === undefined) {
    return new DeployError("UNAUTHENTICATED", "missing bearer token in the authorization header");
  }
  if (!tokensEqual(presented, token)) {
    return new DeployError("UNAUTHENTICATED", "invalid bearer token");
  }
  return undefined;
}

/** Checks one gRPC call's headers: undefined when allowed, else the error to answer with. */
export function checkBearer(metadata: Metadata, token: string): DeployError | undefined {
  const value = metadata.get("authorization")[0];
  return checkAuthorization(typeof value === "string" ? value : undefined, token);
}

/**
 * A server interceptor (pass it in `new Server({ interceptors: [...] })`) enforcing the token on
 * every method outside the exempt services. Throws TypeError for an empty token.
 */
export function createBearerAuthInterceptor(options: BearerAuthOptions): ServerInterceptor {
  const { token } = options;
  if (token.length === 0) throw new TypeError("the bearer token must not be empty");
  const exemptPrefixes = (options.exemptServices ?? [HEALTH_SERVICE_NAME]).map(
    (service) => `/${service}/`,
  );
  return (methodDescriptor, call) => {
    if (exemptPrefixes.some((prefix) => methodDescriptor.path.startsWith(prefix))) {
      return new ServerInterceptingCall(call);
    }
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const error = checkBearer(metadata, token);
        if (error === undefined) {
          // Handlers never see the secret, so they cannot log it by accident.
          metadata.remove("authorization");
          next(metadata);
        } else {
          // Not calling next() keeps the request from ever reaching the handler.
          const refusal = deployErrorToStatus(error);
          options.observer?.refused(methodDescriptor.path, refusal.code);
          call.sendStatus(refusal);
        }
      })
      .build();
    const responder = new ResponderBuilder().withStart((next) => next(listener)).build();
    return new ServerInterceptingCall(call, responder);
  };
}
