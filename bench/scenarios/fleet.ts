/**
 * A fleet of 100 defined agents per tool (50 with --quick): daemon RSS idle, then with 50 and 100
 * running (25 and 50); at each size, status latency (one agent, and the whole list) p50/p99 over sequential calls,
 * and throughput with concurrent calls.
 */
import type { BenchContext } from "../lib/context.ts";
import { makeAgents } from "../lib/fixture.ts";
import { rssBytes } from "../lib/procfs.ts";
import type { Cell, Row, Target } from "../lib/results.ts";
import { delay, nowMs, quantile } from "../lib/timing.ts";
import { Pm2Tool } from "../tools/pm2.ts";
import type { StatusCall, Tool, ToolName } from "../tools/tool.ts";

const MAX_CONCURRENCY = 16;
const WARMUP_CALLS = 20;

/** Sequential calls (at most `calls`, and none started after `maxMs`); each call's duration in ms. */
async function latencies(
  makeCall: (i: number) => StatusCall,
  calls: number,
  maxMs: number,
): Promise<number[]> {
  for (let i = 0; i < WARMUP_CALLS; i++) await makeCall(i).run();
  const times: number[] = [];
  const deadline = nowMs() + maxMs;
  for (let i = 0; i < calls && nowMs() < deadline; i++) {
    const call = makeCall(i);
    const t0 = nowMs();
    await call.run();
    times.push(nowMs() - t0);
  }
  return times;
}

/** `MAX_CONCURRENCY` callers for `durationMs` (and at most `maxCalls` calls); calls per second. */
async function throughput(
  makeCall: (i: number) => StatusCall,
  durationMs: number,
  maxCalls: number,
): Promise<number> {
  let started = 0;
  let done = 0;
  const t0 = nowMs();
  const deadline = t0 + durationMs;
  const worker = async (): Promise<void> => {
    while (nowMs() < deadline && started < maxCalls) {
      const i = started++;
      await makeCall(i).run();
      done += 1;
    }
  };
  await Promise.all(Array.from({ length: MAX_CONCURRENCY }, worker));
  return (done / (nowMs() - t0)) * 1000;
}

type Values = Partial<Record<ToolName, Cell>>;

export async function fleet(ctx: BenchContext, tools: readonly Tool[]): Promise<void> {
  const calls = ctx.pick(500, 100);
  const throughputMs = ctx.pick(2_000, 500);
  const latencyMaxMs = ctx.pick(6_000, 2_000);
  const sizes = ctx.pick([50, 100], [25, 50]);
  const defined = sizes[sizes.length - 1] ?? 100;
  const agents = makeAgents(defined, ctx.basePort);
  const rows = new Map<string, Row>();
  /** Fewest calls a tool managed within the time cap (slow list calls stop early). */
  const samples: Partial<Record<ToolName, number>> = {};
  const values = (key: string): Values => {
    const row = rows.get(key);
    if (row === undefined) throw new Error(`no row ${key}`);
    return row.values as Values;
  };
  const addRow = (
    key: string,
    metric: string,
    unit: Row["unit"],
    note: string,
    target?: Target,
  ): void => {
    rows.set(key, {
      scenario: "status",
      metric,
      unit,
      values: {},
      note,
      ...(target !== undefined && { target }),
    });
  };
  const rssNote =
    "VmRSS of the daemon process alone (atoll-deploy serve; PM2 God daemon; supervisord), after 2 s of settling; agents not included";
  addRow("rss-idle", `daemon RSS, ${defined} defined, none running`, "bytes", rssNote);
  for (const n of sizes) {
    addRow(
      `rss-${n}`,
      `daemon RSS, ${n} running`,
      "bytes",
      rssNote,
      n === 100 ? { kind: "at-most", bound: 80 * 1024 * 1024 } : undefined,
    );
    const latNote = `up to ${calls} sequential calls (at most ${latencyMaxMs / 1000} s per series; fewest taken: SAMPLES) after ${WARMUP_CALLS} warm-up calls, one client connection: atoll GetStatus / ListAgents (gRPC), pm2 describe(name) / list() (programmatic API over PM2's RPC socket, the data of \`pm2 jlist\`), supervisord getProcessInfo / getAllProcessInfo (XML-RPC over keep-alive HTTP); floor reads its own in-process map`;
    const twoMs: Target = { kind: "at-most", bound: 2 };
    addRow(`one-p50-${n}`, `one agent's status p50, ${n} running`, "ms", latNote);
    addRow(
      `one-p99-${n}`,
      `one agent's status p99, ${n} running`,
      "ms",
      latNote,
      n === 100 ? twoMs : undefined,
    );
    addRow(`list-p50-${n}`, `list all p50, ${n} running`, "ms", latNote);
    addRow(
      `list-p99-${n}`,
      `list all p99, ${n} running`,
      "ms",
      latNote,
      n === 100 ? twoMs : undefined,
    );
    const tputNote = `${MAX_CONCURRENCY} concurrent callers on one client for ${throughputMs / 1000} s`;
    addRow(
      `one-tput-${n}`,
      `one agent's status, ${MAX_CONCURRENCY} concurrent, ${n} running`,
      "calls/s",
      tputNote,
      n === 100 ? { kind: "at-least", bound: 5_000 } : undefined,
    );
    addRow(
      `list-tput-${n}`,
      `list all, ${MAX_CONCURRENCY} concurrent, ${n} running`,
      "calls/s",
      tputNote,
    );
  }
  addRow(
    "jlist-cli",
    `\`pm2 jlist\` CLI p50 (a Node start per call), ${defined} running`,
    "ms",
    "10 runs of node_modules/.bin/pm2 jlist, what a shell script polling PM2 pays",
  );

  for (const tool of tools) {
    if (tool.name === "floor") {
      // No daemon and no API: nothing comparable to measure.
      for (const [key, row] of rows) if (key !== "jlist-cli") (row.values as Values).floor = "n/a";
      continue;
    }
    try {
      await ctx.withTool(tool, agents, async () => {
        const daemon = tool.daemonPid();
        const rss = (): Cell =>
          daemon === undefined ? "n/a" : (rssBytes(daemon) ?? { error: "daemon gone" });
        await delay(2_000);
        values("rss-idle")[tool.name] = rss();
        let running: string[] = [];
        for (const n of sizes) {
          const batch = agents.slice(running.length, n).map((a) => a.name);
          await tool.startAll(batch);
          await tool.waitAllHealthy(batch);
          running = [...running, ...batch];
          await delay(2_000);
          values(`rss-${n}`)[tool.name] = rss();
          const one = (i: number): StatusCall =>
            tool.oneCall(running[i % running.length] as string);
          const list = (): StatusCall => tool.listCall;
          const oneTimes = await latencies(one, calls, latencyMaxMs);
          const listTimes = await latencies(list, calls, latencyMaxMs);
          samples[tool.name] = Math.min(
            samples[tool.name] ?? calls,
            oneTimes.length,
            listTimes.length,
          );
          values(`one-p50-${n}`)[tool.name] = quantile(oneTimes, 0.5);
          values(`one-p99-${n}`)[tool.name] = quantile(oneTimes, 0.99);
          values(`list-p50-${n}`)[tool.name] = quantile(listTimes, 0.5);
          values(`list-p99-${n}`)[tool.name] = quantile(listTimes, 0.99);
          values(`one-tput-${n}`)[tool.name] = await throughput(one, throughputMs, 200_000);
          values(`list-tput-${n}`)[tool.name] = await throughput(list, throughputMs, 200_000);
          ctx.log(
            `  ${tool.name} ${n} running: RSS ${((values(`rss-${n}`)[tool.name] as number) / 2 ** 20).toFixed(1)} MiB, one p50/p99 ${quantile(oneTimes, 0.5).toFixed(2)}/${quantile(oneTimes, 0.99).toFixed(2)} ms, list p50/p99 ${quantile(listTimes, 0.5).toFixed(2)}/${quantile(listTimes, 0.99).toFixed(2)} ms`,
          );
        }
        if (tool instanceof Pm2Tool) {
          const times: number[] = [];
          for (let i = 0; i < 10; i++) {
            const t0 = nowMs();
            tool.jlistCli();
            times.push(nowMs() - t0);
          }
          values("jlist-cli")[tool.name] = quantile(times, 0.5);
        }
      });
    } catch (error) {
      const message = error instanceof Error ? error.message.split("\n")[0] : String(error);
      ctx.log(`  ${tool.name} status/fleet: ERROR ${message}`);
      for (const key of rows.keys()) {
        if (key === "jlist-cli" && tool.name !== "pm2") continue;
        if (values(key)[tool.name] === undefined)
          values(key)[tool.name] = { error: message ?? "error" };
      }
    }
  }
  const fewest = Object.entries(samples)
    .map(([tool, n]) => `${tool} ${n}`)
    .join(", ");
  for (const row of rows.values()) {
    if (Object.keys(row.values).length === 0) continue;
    ctx.rows.push(
      row.note === undefined
        ? row
        : { ...row, note: row.note.replace("SAMPLES", fewest || "none") },
    );
  }
}
