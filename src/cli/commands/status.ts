import { GetStatusResponseSchema } from "../../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { type CommandContext, callOptions, EXIT, reportFailure } from "../context.ts";
import { formatStatus, jsonDocument, messageJson } from "../format.ts";

/** `status <name>`: the agent's full status as a block, or the GetStatus response as JSON. */
export async function status(ctx: CommandContext, agent: string): Promise<number> {
  let response: Awaited<ReturnType<typeof ctx.client.getStatus>>;
  try {
    // A quick query: the connect timeout bounds the whole call.
    response = await ctx.client.getStatus(
      { name: agent },
      callOptions(ctx, ctx.options.connectTimeoutMs),
    );
  } catch (error) {
    return reportFailure(ctx, error, agent, "connect");
  }
  if (ctx.out.json) {
    ctx.out.stdout.write(jsonDocument(messageJson(GetStatusResponseSchema, response)));
    return EXIT.OK;
  }
  if (response.agent === undefined) {
    return reportFailure(ctx, new Error("the server answered without the agent"), agent, "connect");
  }
  ctx.out.stdout.write(formatStatus(response.agent, ctx.now(), { style: ctx.out.style }));
  return EXIT.OK;
}
