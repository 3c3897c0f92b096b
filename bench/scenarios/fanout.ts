/**
 * WatchHealth fan-out (atoll-deploy only): 1,000 concurrent streams held by two client processes
 * over several connections each; a crash of one agent (kill -9) is timed from the signal to the
 * CHANGE event leaving RUNNING arriving on every stream. Also the daemon's RSS with the agents
 * and the watchers, and whether any stream saw a revision gap.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { WatchEventType } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { BenchContext } from "../lib/context.ts";
import { type AgentSpec, makeAgents } from "../lib/fixture.ts";
import { rssBytes } from "../lib/procfs.ts";
import type { Cell, Row } from "../lib/results.ts";
import { waitNewProcess } from "../lib/status-probe.ts";
import { delay, nowMs, quantile, wallMs, withTimeout } from "../lib/timing.ts";
import type { FromClient, StreamTotals, ToClient } from "../lib/watch-protocol.ts";
import { AtollTool } from "../tools/atoll.ts";
import type { Tool } from "../tools/tool.ts";

const WATCH_CLIENT = fileURLToPath(new URL("../lib/watch-client.ts", import.meta.url));
const STREAMS = 1_000;
const CLIENT_PROCESSES = 2;
const CHANNELS_PER_PROCESS = 5;

/** A watch-client child and a queue of the messages it sent. */
class WatchClientProcess {
  readonly child: ChildProcess;
  readonly #inbox: FromClient[] = [];
  #waiter: (() => void) | undefined;
  readonly exited: Promise<void>;

  constructor() {
    this.child = fork(WATCH_CLIENT, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.child.on("message", (message: FromClient) => {
      this.#inbox.push(message);
      this.#waiter?.();
    });
    this.exited = new Promise((resolve) => this.child.once("exit", () => resolve()));
  }

  send(message: ToClient): void {
    this.child.send(message);
  }

  /** The next message of `type`, waiting at most `timeoutMs`. */
  async next<T extends FromClient["type"]>(
    type: T,
    timeoutMs: number,
  ): Promise<Extract<FromClient, { type: T }>> {
    const deadline = nowMs() + timeoutMs;
    for (;;) {
      const index = this.#inbox.findIndex((m) => m.type === type);
      if (index >= 0) return this.#inbox.splice(index, 1)[0] as Extract<FromClient, { type: T }>;
      const left = deadline - nowMs();
      if (left <= 0) throw new Error(`watch client: no "${type}" within ${timeoutMs} ms`);
      await Promise.race([
        new Promise<void>((resolve) => {
          this.#waiter = resolve;
        }),
        delay(Math.min(left, 200)),
      ]);
      this.#waiter = undefined;
    }
  }

  async end(): Promise<StreamTotals | undefined> {
    let totals: StreamTotals | undefined;
    if (this.child.connected) {
      this.send({ type: "close" });
      totals = (await this.next("closed", 20_000).catch(() => undefined))?.totals;
    }
    await Promise.race([this.exited, delay(5_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.exited;
    return totals;
  }
}

/**
 * The same crash → CHANGE timing with one stream in the harness process: the daemon's own
 * reaction time, without fan-out.
 */
async function singleStreamLatencies(
  tool: AtollTool,
  agents: readonly AgentSpec[],
  rounds: number,
): Promise<number[]> {
  const latencies: number[] = [];
  let armed: { name: string; atMs: number } | undefined;
  const stop = new AbortController();
  let snapshotDone: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    snapshotDone = resolve;
  });
  const reading = (async () => {
    for await (const event of tool.client.watchHealth({}, { signal: stop.signal })) {
      if (event.type === WatchEventType.SNAPSHOT_COMPLETE) snapshotDone();
      if (
        event.type === WatchEventType.CHANGE &&
        armed !== undefined &&
        event.agent?.name === armed.name &&
        event.previousState === AgentState.RUNNING
      ) {
        latencies.push(nowMs() - armed.atMs);
        armed = undefined;
      }
    }
  })().catch(() => undefined);
  try {
    await withTimeout("single watch stream snapshot", ready, 10_000);
    for (let round = 0; round < rounds; round++) {
      const target = agents[(round * 3 + 1) % agents.length];
      if (target === undefined) break;
      const pid = await tool.pid(target.name);
      armed = { name: target.name, atMs: nowMs() };
      process.kill(pid, "SIGKILL");
      await waitNewProcess(target.port, pid, { timeoutMs: 30_000 });
      await delay(300);
    }
  } finally {
    stop.abort();
    await reading;
  }
  return latencies;
}

export async function watchFanout(ctx: BenchContext, tools: readonly Tool[]): Promise<void> {
  const tool = tools.find((t): t is AtollTool => t instanceof AtollTool);
  if (tool === undefined) return;
  const agentCount = ctx.pick(100, 20);
  const rounds = ctx.pick(12, 5);
  const agents = makeAgents(agentCount, ctx.basePort);
  const latencies: number[] = [];
  const baseline: number[] = [];
  /** Per round, the earliest delivery among the 1,000 streams. */
  const firstPerRound: number[] = [];
  let missing = 0;
  let openMs: Cell = Number.NaN;
  let rss: Cell = Number.NaN;
  const totals: StreamTotals[] = [];
  let failure: string | undefined;
  try {
    await ctx.withTool(tool, agents, async () => {
      await tool.startAll();
      await tool.waitAllHealthy();
      baseline.push(...(await singleStreamLatencies(tool, agents, rounds)));
      ctx.log(`  atoll crash → event on 1 stream: median ${quantile(baseline, 0.5).toFixed(1)} ms`);
      const daemonPid = tool.daemonPid() ?? 0;
      const clients = Array.from({ length: CLIENT_PROCESSES }, () => new WatchClientProcess());
      try {
        const t0 = nowMs();
        for (const client of clients) {
          client.send({
            type: "open",
            address: tool.address,
            streams: STREAMS / CLIENT_PROCESSES,
            channels: CHANNELS_PER_PROCESS,
          });
        }
        for (const client of clients) {
          const ready = await client.next("ready", 120_000);
          if (ready.failed > 0)
            throw new Error(`${ready.failed} streams failed to open: ${ready.firstError ?? "?"}`);
        }
        openMs = nowMs() - t0;
        await delay(2_000);
        rss = rssBytes(daemonPid) ?? { error: "daemon gone" };
        ctx.log(
          `  atoll ${STREAMS} streams open in ${openMs.toFixed(0)} ms, daemon RSS ${((rss as number) / 2 ** 20).toFixed(1)} MiB`,
        );
        for (let round = 0; round < rounds; round++) {
          const target = agents[(round * 7) % agents.length];
          if (target === undefined) break;
          for (const client of clients) client.send({ type: "arm", round, target: target.name });
          for (const client of clients) await client.next("armed", 10_000);
          const pid = await tool.pid(target.name);
          const killedAt = wallMs();
          process.kill(pid, "SIGKILL");
          const collected = await Promise.all(
            clients.map(async (client) => {
              try {
                return await client.next("arrivals", 10_000);
              } catch {
                client.send({ type: "collect", round });
                return client.next("arrivals", 10_000);
              }
            }),
          );
          let first = Number.POSITIVE_INFINITY;
          for (const arrivals of collected) {
            for (const t of arrivals.times) {
              latencies.push(t - killedAt);
              first = Math.min(first, t - killedAt);
            }
            missing += arrivals.missing;
          }
          if (Number.isFinite(first)) firstPerRound.push(first);
          // Let the restart's own events (STARTING, RUNNING) reach every stream before the next round.
          await waitNewProcess(target.port, pid, { timeoutMs: 30_000 });
          await delay(500);
        }
      } finally {
        for (const client of clients) {
          const t = await withTimeout("watch client end", client.end(), 30_000).catch(
            () => undefined,
          );
          if (t !== undefined) totals.push(t);
        }
      }
    });
  } catch (error) {
    failure = error instanceof Error ? error.message.split("\n")[0] : String(error);
    ctx.log(`  atoll fan-out: ERROR ${failure}`);
  }
  const gaps = totals.reduce((sum, t) => sum + t.gaps, 0);
  const errors = totals.flatMap((t) => Object.entries(t.errors).map(([k, v]) => `${v}× ${k}`));
  if (gaps > 0) ctx.violations.push(`fan-out: ${gaps} revision gaps across ${STREAMS} watchers`);
  if (errors.length > 0) ctx.violations.push(`fan-out: stream errors: ${errors.join("; ")}`);
  if (missing > 0) ctx.violations.push(`fan-out: ${missing} stream×round deliveries never arrived`);
  const cell = (value: number): Cell =>
    failure !== undefined && !Number.isFinite(value) ? { error: failure } : value;
  const note = `${agentCount} running agents, ${STREAMS} WatchHealth streams (all agents) from ${CLIENT_PROCESSES} client processes × ${CHANNELS_PER_PROCESS} connections; ${rounds} rounds of kill -9 on one agent; latency = receive wall-clock time of its CHANGE event leaving RUNNING on each stream − time of the kill (${latencies.length} deliveries)`;
  const rows: Row[] = [
    {
      scenario: "fanout",
      metric: "crash → event, 1 stream only (median, baseline)",
      unit: "ms",
      values: { atoll: cell(quantile(baseline, 0.5)) },
      note: `one WatchHealth stream in the harness process, ${rounds} kills; the daemon's reaction time without fan-out`,
    },
    {
      scenario: "fanout",
      metric: "crash → event on the first stream (median over rounds)",
      unit: "ms",
      values: { atoll: cell(quantile(firstPerRound, 0.5)) },
      note,
    },
    {
      scenario: "fanout",
      metric: `crash → event on all ${STREAMS} streams, p50`,
      unit: "ms",
      values: { atoll: cell(quantile(latencies, 0.5)) },
      note,
    },
    {
      scenario: "fanout",
      metric: `crash → event on all ${STREAMS} streams, p99`,
      unit: "ms",
      values: { atoll: cell(quantile(latencies, 0.99)) },
      target: { kind: "at-most", bound: 100 },
      note,
    },
    {
      scenario: "fanout",
      metric: `crash → event on all ${STREAMS} streams, max`,
      unit: "ms",
      values: { atoll: cell(quantile(latencies, 1)) },
      note,
    },
    {
      scenario: "fanout",
      metric: `open ${STREAMS} streams + snapshots`,
      unit: "ms",
      values: { atoll: typeof openMs === "number" ? cell(openMs) : openMs },
      note,
    },
    {
      scenario: "fanout",
      metric: `daemon RSS, ${agentCount} running + ${STREAMS} watchers`,
      unit: "bytes",
      values: { atoll: typeof rss === "number" ? cell(rss) : rss },
      target: { kind: "at-most", bound: 80 * 1024 * 1024 },
      note,
    },
    {
      scenario: "fanout",
      metric: "revision gaps / lost deliveries",
      unit: "count",
      values: { atoll: failure !== undefined ? { error: failure } : gaps + missing },
      note,
    },
  ];
  ctx.rows.push(...rows);
}
