import { DeployResponseSchema } from "../../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { CommandContext } from "../context.ts";
import { deployedLine } from "../format.ts";
import { isRunning, runAgentOperation } from "./agent-operation.ts";

/** `deploy <name>`: starts the agent and waits until it is running and healthy. */
export function deploy(
  ctx: CommandContext,
  agent: string,
  timeoutMs: number | undefined,
): Promise<number> {
  return runAgentOperation(ctx, {
    agent,
    timeoutMs,
    progressText: `Deploying ${agent}`,
    responseSchema: DeployResponseSchema,
    call: (options) => ctx.client.deploy({ name: agent }, options),
    successLine: deployedLine,
    settled: isRunning,
  });
}
