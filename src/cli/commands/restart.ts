import { RestartResponseSchema } from "../../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { CommandContext } from "../context.ts";
import { restartedLine } from "../format.ts";
import { isRunning, runAgentOperation } from "./agent-operation.ts";

/** `restart <name>`: stops the agent if it runs, starts it, waits like deploy. */
export function restart(
  ctx: CommandContext,
  agent: string,
  timeoutMs: number | undefined,
): Promise<number> {
  return runAgentOperation(ctx, {
    agent,
    timeoutMs,
    progressText: `Restarting ${agent}`,
    responseSchema: RestartResponseSchema,
    call: (options) => ctx.client.restart({ name: agent }, options),
    successLine: restartedLine,
    settled: isRunning,
  });
}
