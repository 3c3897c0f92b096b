/**
 * How the client reaches the server: the channel credentials (plaintext, or TLS with
 * `--tls-ca`, mutual with `--tls-cert`/`--tls-key`), the bearer token of `--token-file`, and a
 * factory for typed clients of `DeploymentService` built with the package's client,
 * `createDeploymentClient` (`atoll-deploy/client`).
 */
import { readFile } from "node:fs/promises";
import { type ChannelCredentials, type ClientOptions, credentials } from "@grpc/grpc-js";
import { createDeploymentClient, type DeploymentClient } from "../client.ts";
import type { ClientOptions as CliClientOptions } from "./command-line.ts";

export type { DeploymentClient };

/** What the client needs to make calls; the files it names have been read. */
export interface Connection {
  /** The address as given (`127.0.0.1:50051`, `unix:/run/atoll.sock`), for messages. */
  readonly address: string;
  /** Headers sent with every call: `authorization` when a token file was given. */
  readonly metadata: Readonly<Record<string, string>>;
  /** A new client on its own channel; the caller closes it. */
  newClient(): DeploymentClient;
}

/** A local file named on the command line could not be used (exit status 2). */
export class LocalFileError extends Error {
  override readonly name = "LocalFileError";
}

/**
 * Channel options of every client. Reconnection backoff is capped low so that a restarted
 * server is found again within seconds (the default cap is two minutes).
 */
const CHANNEL_OPTIONS: ClientOptions = {
  "grpc.initial_reconnect_backoff_ms": 250,
  "grpc.max_reconnect_backoff_ms": 5_000,
  "grpc.primary_user_agent": "atoll-deploy-cli",
};

async function readLocal(what: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new LocalFileError(`cannot read ${what} ${file}: ${reason}`);
  }
}

async function channelCredentials(options: CliClientOptions): Promise<ChannelCredentials> {
  const { tlsCa, tlsCert, tlsKey } = options;
  if (tlsCa === undefined && tlsCert === undefined) return credentials.createInsecure();
  const [ca, cert, key] = await Promise.all([
    tlsCa === undefined ? null : readLocal("TLS CA file", tlsCa),
    tlsCert === undefined ? null : readLocal("TLS certificate file", tlsCert),
    tlsKey === undefined ? null : readLocal("TLS key file", tlsKey),
  ]);
  // Without --tls-ca the system's trusted roots apply (ca = null).
  return credentials.createSsl(ca, key, cert);
}

async function authMetadata(tokenFile: string | undefined): Promise<Record<string, string>> {
  if (tokenFile === undefined) return {};
  const token = (await readLocal("token file", tokenFile)).toString("utf8").trim();
  if (token === "") throw new LocalFileError(`token file ${tokenFile} is empty`);
  if (/\s/.test(token)) {
    throw new LocalFileError(`token file ${tokenFile} must hold one token without spaces`);
  }
  return { authorization: `Bearer ${token}` };
}

/**
 * Reads the token and TLS files named in `options`. Rejects with LocalFileError when one is
 * missing, unreadable or (the token) empty. Does not contact the server.
 */
export async function openConnection(options: CliClientOptions): Promise<Connection> {
  const [creds, metadata] = await Promise.all([
    channelCredentials(options),
    authMetadata(options.tokenFile),
  ]);
  return {
    address: options.server,
    metadata,
    newClient: () =>
      createDeploymentClient(options.server, {
        credentials: creds,
        channelOptions: CHANNEL_OPTIONS,
      }),
  };
}
