/** Cold start: N agents from not running to every one answering /status, per tool. */
import type { BenchContext } from "../lib/context.ts";
import { makeAgents } from "../lib/fixture.ts";
import type { Cell } from "../lib/results.ts";
import { median, nowMs } from "../lib/timing.ts";
import type { Tool, ToolName } from "../tools/tool.ts";

/** One cold start: startAll while the harness polls every agent; ms until all answered 200. */
async function coldStartOnce(ctx: BenchContext, tool: Tool, size: number): Promise<number> {
  return ctx.withTool(tool, makeAgents(size, ctx.basePort), async () => {
    const abort = new AbortController();
    const t0 = nowMs();
    const healthy = tool.waitAllHealthy(undefined, 120_000, abort.signal).then(() => nowMs() - t0);
    try {
      await tool.startAll();
    } catch (error) {
      abort.abort(error);
      await healthy.catch(() => undefined);
      throw error;
    }
    return await healthy;
  });
}

export async function coldStart(ctx: BenchContext, tools: readonly Tool[]): Promise<void> {
  for (const size of [10, 50]) {
    const reps = ctx.pick(size === 10 ? 3 : 2, 1);
    const values: Partial<Record<ToolName, Cell>> = {};
    for (const tool of tools) {
      values[tool.name] = await ctx.cell(tool, `cold start ${size}`, async () => {
        const samples: number[] = [];
        for (let i = 0; i < reps; i++) samples.push(await coldStartOnce(ctx, tool, size));
        const value = median(samples);
        ctx.log(
          `  ${tool.name} cold start ${size}: ${value.toFixed(0)} ms (${samples.map((s) => s.toFixed(0)).join(", ")})`,
        );
        return value;
      });
    }
    ctx.rows.push({
      scenario: "cold",
      metric: `${size} agents → all healthy${reps > 1 ? ` (median of ${reps})` : ""}`,
      unit: "ms",
      values,
      ...(size === 50 && { target: { kind: "ratio-to-floor", factor: 1.15 } as const }),
      note: "daemon already up, no agent running; clock from the start call (atoll: N parallel Deploy; pm2: start(ecosystem); supervisord: multicall startProcess(name, wait=false); floor: N spawns) until the harness's own GET /status polling (every 25 ms per agent) has seen 200 from every agent",
    });
  }
}
