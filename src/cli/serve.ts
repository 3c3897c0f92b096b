/**
 * `atoll-deploy serve`: the daemon, a thin shell over `DeploymentServer` (src/server/). This
 * module turns argv, the environment and the config file into a configuration, and signals
 * into `stop()`, and the outcome into the exit status; the server does the rest.
 */
import os from "node:os";
import { isConfigError } from "../config/config-error.ts";
import { type LoadedServerConfig, loadServerConfig } from "../config/server-config.ts";
import { isDeployError } from "../core/errors.ts";
import { createJsonLogger, type Logger } from "../core/logger.ts";
import { DeploymentServer } from "../server/deployment-server.ts";
import { ServerSetup } from "../server/server-options.ts";
import type { FatalHandler } from "./crash-guard.ts";
import { parseServeFlags, SERVE_USAGE } from "./serve-flags.ts";

export interface ServeIo {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /**
   * Resolves with the first of SIGTERM, SIGINT (stop agents, exit) or SIGUSR2
   * (detach: exit leaving agents running); `onSecond` runs on any later signal.
   */
  readonly shutdownSignals: (onSecond: () => void) => Promise<NodeJS.Signals>;
  /**
   * Subscribes to errors nothing caught (`src/cli/crash-guard.ts`): the daemon logs each and
   * detaches, exiting 1 with the agents left running for the next daemon to adopt.
   */
  readonly fatalErrors?: (handler: FatalHandler) => void;
}

function loadConfig(io: ServeIo): LoadedServerConfig | number {
  const parsed = parseServeFlags(io.argv);
  if ("error" in parsed) {
    io.stderr.write(`atoll-deploy serve: ${parsed.error}\n${SERVE_USAGE}`);
    return 2;
  }
  if (parsed.help) {
    io.stdout.write(SERVE_USAGE);
    return 0;
  }
  try {
    return loadServerConfig({
      flags: parsed.flags,
      env: io.env,
      cwd: io.cwd,
      homeDir: io.env.HOME ?? os.homedir(),
      ...(parsed.configFile !== undefined && { configFile: parsed.configFile }),
    });
  } catch (error) {
    if (isConfigError(error)) {
      io.stderr.write(`atoll-deploy serve: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
}

/**
 * `atoll-deploy serve`: runs the daemon until SIGTERM/SIGINT. Exit status 0 when
 * every agent stopped within its grace, 1 when any had to be killed or the
 * server could not start, 2 for configuration errors.
 */
export async function runServe(io: ServeIo): Promise<number> {
  const loaded = loadConfig(io);
  if (typeof loaded === "number") return loaded;
  if (!loaded.config.enabled) {
    io.stdout.write("atoll-deploy: the server is disabled by config (enabled = false)\n");
    return 0;
  }
  const logger = createJsonLogger({ sink: io.stderr, level: loaded.config.logLevel });
  // An error nothing caught: logged, then the daemon detaches instead of dying mid-write.
  const fatal = new Promise<true>((resolve) => {
    io.fatalErrors?.((error, origin) => {
      logger.error("uncaught error in the daemon; detaching, agents keep running", {
        origin,
        error,
      });
      resolve(true);
    });
  });
  const server = new DeploymentServer(new ServerSetup({ loaded, logger, env: io.env }));
  try {
    await server.start();
  } catch (error) {
    if (!isDeployError(error)) throw error;
    io.stderr.write(`atoll-deploy serve: ${error.message}\n`);
    return error.reason === "INVALID_ARGUMENT" ? 2 : 1;
  }
  io.stdout.write(`atoll-deploy listening on ${server.address}\n`);
  if (server.httpUrl !== undefined)
    io.stdout.write(`atoll-deploy dashboard on ${server.httpUrl}/\n`);

  const force = new AbortController();
  const stop = await Promise.race([
    io
      .shutdownSignals(() => {
        logger.warn("second signal: killing agents now");
        force.abort();
      })
      .then((signal) => ({ signal, fatal: false })),
    fatal.then(() => ({ signal: undefined, fatal: true })),
  ]);
  if (stop.signal !== undefined) logger.info("signal received", { signal: stop.signal });
  // SIGUSR2 is the upgrade path (and a fatal error the way out): the next `serve` adopts the
  // agents left running.
  const { killedAgents } = await server.stop({
    detach: stop.signal === "SIGUSR2" || stop.fatal,
    force: force.signal,
  });
  if (stop.fatal) return 1;
  return killedAgents ? 1 : 0;
}

export type { Logger };
