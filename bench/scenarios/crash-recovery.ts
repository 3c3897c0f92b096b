/** Crash recovery: kill -9 of an agent's pid → a new process answering /status. */
import type { BenchContext } from "../lib/context.ts";
import { makeAgents } from "../lib/fixture.ts";
import type { Cell } from "../lib/results.ts";
import { waitNewProcess } from "../lib/status-probe.ts";
import { delay, median, quantile } from "../lib/timing.ts";
import type { Tool, ToolName } from "../tools/tool.ts";

const FLEET = 10;

export async function crashRecovery(ctx: BenchContext, tools: readonly Tool[]): Promise<void> {
  const crashes = ctx.pick(12, 6);
  const medians: Partial<Record<ToolName, Cell>> = {};
  const worst: Partial<Record<ToolName, Cell>> = {};
  for (const tool of tools) {
    const agents = makeAgents(FLEET, ctx.basePort);
    let samples: number[] = [];
    medians[tool.name] = await ctx.cell(tool, "crash recovery", async () => {
      samples = await ctx.withTool(tool, agents, async () => {
        await tool.startAll();
        await tool.waitAllHealthy();
        // Past every tool's "stable" window (PM2 min_uptime, supervisord startsecs, atoll stable_after).
        await delay(1_500);
        const times: number[] = [];
        for (let i = 0; i < crashes; i++) {
          const agent = agents[i % agents.length];
          if (agent === undefined) break;
          const crash = await tool.crash(agent.name);
          const back = await waitNewProcess(agent.port, crash.pid, { timeoutMs: 30_000 });
          times.push(back.atMs - crash.atMs);
          await delay(200);
        }
        return times;
      });
      ctx.log(
        `  ${tool.name} crash recovery: median ${median(samples).toFixed(0)} ms, max ${Math.max(...samples).toFixed(0)} ms`,
      );
      return median(samples);
    });
    const failed = medians[tool.name];
    worst[tool.name] = samples.length > 0 ? quantile(samples, 1) : (failed ?? "n/a");
  }
  const note = `fleet of ${FLEET} healthy agents, ${crashes} crashes round-robin (each agent up > 1.5 s before its crash); clock from kill -9 of the pid the tool reports until GET /status (polled every 5 ms on a fresh connection) answers 200 from a different pid`;
  ctx.rows.push(
    {
      scenario: "crash",
      metric: `kill -9 → new process answering (median of ${crashes})`,
      unit: "ms",
      values: medians,
      target: { kind: "ratio-to-floor", factor: 1.2 },
      note,
    },
    {
      scenario: "crash",
      metric: `kill -9 → new process answering (worst of ${crashes})`,
      unit: "ms",
      values: worst,
      note,
    },
  );
}
