import { ListAgentsResponseSchema } from "../../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { type CommandContext, callOptions, EXIT, reportFailure } from "../context.ts";
import { formatAgentTable, jsonDocument, messageJson } from "../format.ts";

/** `list`: every agent as a table, or the ListAgents response as JSON. */
export async function list(ctx: CommandContext): Promise<number> {
  let response: Awaited<ReturnType<typeof ctx.client.listAgents>>;
  try {
    response = await ctx.client.listAgents({}, callOptions(ctx, ctx.options.connectTimeoutMs));
  } catch (error) {
    return reportFailure(ctx, error, undefined, "connect");
  }
  if (ctx.out.json) {
    ctx.out.stdout.write(jsonDocument(messageJson(ListAgentsResponseSchema, response)));
  } else {
    ctx.out.stdout.write(formatAgentTable(response.agents, { style: ctx.out.style }));
  }
  return EXIT.OK;
}
