/**
 * The dashboard's only way to the server: the DeploymentService on the page's own origin (the
 * HTTP listener of SPEC §9), through the generated descriptors, over gRPC-Web. gRPC-Web rather
 * than the Connect protocol because it answers every call with HTTP 200 and puts the outcome in
 * its trailers: a refused Deploy is then an answer the page shows, not a failed request that the
 * browser also reports in its console. The bearer token, when the server wants one, lives in
 * sessionStorage (gone with the tab, never in the URL) and is added to every call by an
 * interceptor.
 */
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";

export type DeploymentClient = Client<typeof DeploymentService>;

const TOKEN_KEY = "atoll-deploy.token";

/** The token kept for this tab, if any. */
export function storedToken(): string | undefined {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
  } catch {
    // Storage disabled (privacy settings): the token then lasts as long as the page.
    return memoryToken;
  }
}

let memoryToken: string | undefined;

export function storeToken(token: string | undefined): void {
  memoryToken = token;
  try {
    if (token === undefined) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // See storedToken: kept in memory only.
  }
}

const bearer: Interceptor = (next) => (request) => {
  const token = storedToken();
  if (token !== undefined) request.header.set("authorization", `Bearer ${token}`);
  return next(request);
};

/** A client of the page's own server. */
export function createDeploymentClient(baseUrl: string = location.origin): DeploymentClient {
  // Binary protobuf (gRPC-Web's default): small, and 64-bit fields stay bigint.
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [bearer] });
  return createClient(DeploymentService, transport);
}

/** True when the server refused the call for want of the right token. */
export function isUnauthenticated(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.Unauthenticated;
}

/** True when the call was aborted by the page itself (the user moved on). */
export function isCanceled(error: unknown): boolean {
  return ConnectError.from(error).code === Code.Canceled;
}

/**
 * One line for a person: the server's message and, when it sent one, the ErrorInfo reason
 * (`AGENT_CONFIG_INVALID`), e.g. "agent x: definition invalid (AGENT_CONFIG_INVALID)".
 */
export function describeError(error: unknown): string {
  const connectError = ConnectError.from(error);
  const reason = connectError.findDetails(ErrorInfoSchema)[0]?.reason;
  const message = connectError.rawMessage || Code[connectError.code];
  return reason === undefined ? message : `${message} (${reason})`;
}
