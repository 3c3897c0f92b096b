import { UndeployResponseSchema } from "../../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { CommandContext } from "../context.ts";
import { stoppedLine } from "../format.ts";
import { isNotLive, runAgentOperation } from "./agent-operation.ts";

/** `undeploy <name>`: stops the agent gracefully and waits until it has stopped. */
export function undeploy(
  ctx: CommandContext,
  agent: string,
  timeoutMs: number | undefined,
): Promise<number> {
  return runAgentOperation(ctx, {
    agent,
    timeoutMs,
    progressText: `Stopping ${agent}`,
    responseSchema: UndeployResponseSchema,
    call: (options) => ctx.client.undeploy({ name: agent }, options),
    successLine: stoppedLine,
    // Undeploying an agent that never ran (DISCOVERED, FAILED, INVALID) is fine as it is.
    settled: isNotLive,
  });
}
