/**
 * Bearer-token authentication (SPEC §3 `auth_token_file`): a grpc-js server interceptor that
 * lets a call through only when its `authorization` header is `Bearer <token>`, answering
 * UNAUTHENTICATED (with ErrorInfo reason `UNAUTHENTICATED`) before any handler runs. Health
 * checks are exempt so standard probes keep working.
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
import { deployErrorToStatus } from "./error-mapping.ts";
import { HEALTH_SERVICE_NAME } from "./health-and-reflection.ts";

export interface BearerAuthOptions {
  /** The expected token (already trimmed of the token file's trailing newline). Must not be empty. */
  readonly token: string;
  /** Fully qualified services callable without a token. Default: `grpc.health.v1.Health`. */
  readonly exemptServices?: readonly string[];
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

/** The token of an `authorization: Bearer <token>` header, or undefined when absent or not Bearer. */
export function bearerToken(metadata: Metadata): string | undefined {
  const value = metadata.get("authorization")[0];
  if (typeof value !== "string") return undefined;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(value);
  return match?.[1];
}

/** Checks one call's headers: undefined when allowed, else the error to answer with. */
export function checkBearer(metadata: Metadata, token: string): DeployError | undefined {
  const presented = bearerToken(metadata);
  if (presented === undefined) {
    return new DeployError("UNAUTHENTICATED", "missing bearer token in the authorization header");
  }
  if (!tokensEqual(presented, token)) {
    return new DeployError("UNAUTHENTICATED", "invalid bearer token");
  }
  return undefined;
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
          call.sendStatus(deployErrorToStatus(error));
        }
      })
      .build();
    const responder = new ResponderBuilder().withStart((next) => next(listener)).build();
    return new ServerInterceptingCall(call, responder);
  };
}
