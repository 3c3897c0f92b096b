import { type CommandContext, callOptions, EXIT, reportFailure } from "../context.ts";
import { jsonLine } from "../format.ts";

/**
 * `logs <name> [-f] [-n N]`: the agent's last `lines` lines of output as they were written
 * (`{"line": "..."}` per line with --json); with `follow`, new lines until interrupted.
 */
export async function logs(
  ctx: CommandContext,
  agent: string,
  lines: number,
  follow: boolean,
): Promise<number> {
  try {
    await ctx.client.getStatus({ name: agent }, callOptions(ctx, ctx.options.connectTimeoutMs));
  } catch (error) {
    return reportFailure(ctx, error, agent, "connect");
  }
  try {
    const stream = ctx.client.streamLogs(
      { name: agent, tailLines: lines, follow },
      callOptions(ctx),
    );
    for await (const batch of stream) {
      const text = ctx.out.json
        ? batch.lines.map((line) => jsonLine({ line })).join("")
        : batch.lines.map((line) => `${line}\n`).join("");
      ctx.out.stdout.write(text);
    }
  } catch (error) {
    // Interrupting a follow is how it normally ends.
    if (ctx.signal.aborted && follow) return EXIT.OK;
    return reportFailure(ctx, error, agent, "operation");
  }
  return EXIT.OK;
}
