/**
 * The HTTP listener part (SPEC §9, `http_listen`): the dashboard, `/metrics`, and the
 * DeploymentService over Connect and gRPC-Web, mounting the gRPC listener's own handler set
 * (so it is started after it), with the same token and TLS.
 */
import type { ServerConfig } from "../config/server-config-types.ts";
import type { Logger } from "../core/logger.ts";
import { startHttpServer } from "../http/http-server.ts";
import type { AtollMetrics } from "../http/metrics.ts";
import { DEFAULT_UI_DIRECTORY } from "../http/static-assets.ts";
import type { DeploymentApi } from "../rpc/server.ts";
import type { ListenerPart } from "./server-parts.ts";

/**
 * Binds `address` and serves `api` there.
 * @throws Error (one line) when the address is busy or a TLS file cannot be read.
 */
export async function startHttpListener(options: {
  readonly address: string;
  readonly config: ServerConfig;
  readonly authToken: string | undefined;
  readonly api: DeploymentApi;
  readonly metrics: AtollMetrics | undefined;
  readonly logger: Logger;
}): Promise<ListenerPart> {
  const { config, metrics } = options;
  const http = await startHttpServer({
    listen: options.address,
    api: options.api,
    logger: options.logger,
    authToken: options.authToken,
    tlsCert: config.tlsCert,
    tlsKey: config.tlsKey,
    tlsClientCa: config.tlsClientCa,
    metrics,
    observer: metrics,
    uiDirectory: DEFAULT_UI_DIRECTORY,
  });
  return {
    kind: "http",
    address: http.url,
    // The handlers' shutdown signal is the gRPC listener's: its beginDrain ends the streams here.
    beginDrain: () => {},
    close: (graceMs) => http.close(graceMs),
  };
}
