/**
 * From what the command line chose (`ServerSelection`) and the contexts file to the connection
 * settings of a client command. Pure: the file has been read by the caller.
 */
import type { ClientContext, ContextsFile } from "./client-contexts.ts";
import type { ClientOptions } from "./command-spec.ts";

/** The named context does not exist (a usage error: exit status 2). */
export class UnknownContextError extends Error {
  override readonly name = "UnknownContextError";
}

/** True when resolving `options` needs the contexts file. */
export function needsContextsFile(options: ClientOptions): boolean {
  return options.selection.kind !== "address";
}

/**
 * `options` with the server and credentials of `context`; the command line's own
 * `--token-file`, `--tls-ca` and `--tls-cert`/`--tls-key` (as a pair) win over the context's.
 */
export function withContextSettings(options: ClientOptions, context: ClientContext): ClientOptions {
  const certPair =
    options.tlsCert !== undefined
      ? { tlsCert: options.tlsCert, tlsKey: options.tlsKey }
      : { tlsCert: context.tlsCert, tlsKey: context.tlsKey };
  return {
    ...options,
    server: context.server,
    contextName: context.name,
    tokenFile: options.tokenFile ?? context.tokenFile,
    tlsCa: options.tlsCa ?? context.tlsCa,
    ...certPair,
  };
}

/**
 * The connection settings of a single-server command.
 * @throws UnknownContextError when `--context` / `ATOLL_DEPLOY_CONTEXT` names no context.
 */
export function resolveClientOptions(
  options: ClientOptions,
  file: ContextsFile | undefined,
): ClientOptions {
  const selection = options.selection;
  if (selection.kind === "address") return options;
  const contexts = file?.contexts ?? [];
  if (selection.kind === "current") {
    const current = contexts.find((c) => c.name === file?.current);
    return current === undefined ? options : withContextSettings(options, current);
  }
  const context = contexts.find((c) => c.name === selection.name);
  if (context === undefined) {
    const known =
      contexts.length === 0
        ? `no contexts are defined in ${file?.path ?? "the contexts file"}`
        : `known: ${contexts.map((c) => c.name).join(", ")}`;
    throw new UnknownContextError(
      `unknown context ${JSON.stringify(selection.name)} (from ${selection.from}); ${known}`,
    );
  }
  return withContextSettings(options, context);
}
