/**
 * `atoll-deploy` as a library (SPEC §10): embed the deployment server in a program.
 *
 * @example
 * import { DeploymentServer, isDeployError } from "atoll-deploy";
 * const server = new DeploymentServer({ agentsDirectory: "./agents", stateDir: "./state" });
 * await server.start();
 * try {
 *   const agent = await server.startAgent("greeter");
 *   console.log(`greeter on port ${agent.port}`);
 * } catch (error) {
 *   if (isDeployError(error)) console.error(error.reason, error.message);
 * }
 * await server.stop();
 *
 * The gRPC client of a server running elsewhere is `atoll-deploy/client`. Guide:
 * docs/embedding.md in the repository.
 */

export type { ServerConfig } from "./config/server-config-types.ts";
export type { AgentStateName, ExitRecord, HealthName } from "./core/agent-state.ts";
export type { AgentStatus } from "./core/agent-status.ts";
export { DeployError, type DeployErrorCode, isDeployError } from "./core/errors.ts";
export type { LogFields, Logger, LogLevel } from "./core/logger.ts";
export type { WatchEvent, WatchOptions } from "./server/agent-watch.ts";
export { DeploymentServer, type StopOptions, type StopResult } from "./server/deployment-server.ts";
export type { DeploymentServerOptions, ServerConfigOptions } from "./server/server-options.ts";
