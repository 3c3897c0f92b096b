/** Stopping N agents: well-behaved ones, and ones that ignore SIGTERM (2 s grace, then SIGKILL). */
import type { BenchContext } from "../lib/context.ts";
import { makeAgents } from "../lib/fixture.ts";
import { busyPorts } from "../lib/ports.ts";
import { waitGone } from "../lib/procfs.ts";
import type { Cell } from "../lib/results.ts";
import { delay, nowMs } from "../lib/timing.ts";
import type { Tool, ToolName } from "../tools/tool.ts";

async function stopOnce(
  ctx: BenchContext,
  tool: Tool,
  size: number,
  ignoreSigterm: boolean,
): Promise<number> {
  const agents = makeAgents(
    size,
    ctx.basePort,
    ignoreSigterm ? { faults: ["ignore-sigterm"] } : {},
  );
  return ctx.withTool(tool, agents, async () => {
    await tool.startAll();
    await tool.waitAllHealthy();
    const pids = await Promise.all(agents.map((a) => tool.pid(a.name)));
    const t0 = nowMs();
    await tool.stopAll();
    const returned = nowMs();
    if (!(await waitGone(pids, 120_000)))
      throw new Error("agent processes still alive 120 s after stop");
    const gone = nowMs();
    // Ports must be free too (bounded wait: a port is released with its last holder).
    let busy = await busyPorts(agents.map((a) => a.port));
    const deadline = nowMs() + 5_000;
    while (busy.length > 0 && nowMs() < deadline) {
      await delay(20);
      busy = await busyPorts(busy);
    }
    if (busy.length > 0)
      throw new Error(`ports still bound after stop: ${busy.slice(0, 5).join(", ")}`);
    return Math.max(returned, gone) - t0;
  });
}

export async function stopAgents(ctx: BenchContext, tools: readonly Tool[]): Promise<void> {
  const size = ctx.pick(50, 10);
  for (const ignoreSigterm of [false, true]) {
    const values: Partial<Record<ToolName, Cell>> = {};
    for (const tool of tools) {
      values[tool.name] = await ctx.cell(tool, "stop", async () => {
        const ms = await stopOnce(ctx, tool, size, ignoreSigterm);
        ctx.log(
          `  ${tool.name} stop ${size}${ignoreSigterm ? " ignoring SIGTERM" : ""}: ${ms.toFixed(0)} ms`,
        );
        return ms;
      });
    }
    ctx.rows.push({
      scenario: "stop",
      metric: ignoreSigterm
        ? `${size} agents ignoring SIGTERM, 2 s grace`
        : `${size} agents, graceful`,
      unit: "ms",
      values,
      ...(ignoreSigterm && { target: { kind: "ratio-to-floor", factor: 1.1 } as const }),
      note: "clock from the stop call (atoll: N parallel Undeploy; pm2: stop('all'); supervisord: stopAllProcesses(wait=true); floor: SIGTERM to each group, SIGKILL after 2 s) until the call returned AND every agent pid is gone (zombies count as gone) AND every port can be bound again",
    });
  }
}
