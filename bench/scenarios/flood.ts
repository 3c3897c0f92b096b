/**
 * One agent flooding its stdout at 10 MB/s for 30 s (10 s with --quick) with blocking writes
 * (tests/fixtures/flood-agent.mjs), each tool asked to keep its logs to 10 MiB per file and 3
 * old files. Measured: the peak disk use of the agent's logs (sampled every 50 ms), the bytes
 * the agent managed to write and how long its writes blocked (the agent's own figures), and the
 * CPU and peak RSS of the daemon (atoll: plus its output keeper) while the agent floods. The
 * floor column is the same agent writing to /dev/null, with no supervisor.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, statSync } from "node:fs";
import { request } from "node:http";
import type { BenchContext } from "../lib/context.ts";
import { type AgentSpec, FLOOD_FIXTURE, fixtureArgs, fixtureEnv, NODE } from "../lib/fixture.ts";
import { cpuSeconds, killHard, rssBytes } from "../lib/procfs.ts";
import type { Cell, Row } from "../lib/results.ts";
import { delay, nowMs, pollUntil } from "../lib/timing.ts";
import type { Tool, ToolName } from "../tools/tool.ts";

const RATE_BYTES_PER_S = 10_000_000;
const MAX_BYTES = 10 * 1024 * 1024;
const KEEP = 3;
/** SPEC §4: (log_keep + 1) × log_max_bytes + 64 KiB. */
const BOUND_BYTES = (KEEP + 1) * MAX_BYTES + 64 * 1024;

interface FloodStats {
  readonly written: number;
  readonly writeMs: number;
  readonly maxWriteMs: number;
  readonly errors: number;
  readonly flooding: boolean;
}

interface Figures {
  readonly peakDiskBytes: number | undefined;
  readonly written: number;
  readonly writeMs: number;
  readonly maxWriteMs: number;
  readonly errors: number;
  readonly cpuPercent: number | undefined;
  readonly peakRssBytes: number | undefined;
}

function agentStats(port: number): Promise<FloodStats> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: "/status", timeout: 5_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => {
        try {
          resolve(JSON.parse(body) as FloodStats);
        } catch (error) {
          reject(error);
        }
      });
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.end();
  });
}

/** Polls the agent until its flood is over; its final figures. */
function untilFloodEnds(port: number, seconds: number): Promise<FloodStats> {
  return pollUntil(
    "the agent's flood to end",
    async () => {
      const stats = await agentStats(port).catch(() => undefined);
      // Only the flood fixture answers with these: anything else on the port is not our agent.
      if (stats !== undefined && typeof stats.writeMs !== "number") {
        throw new Error(`port ${port} answers, but not as the flood agent (another process?)`);
      }
      return stats !== undefined && !stats.flooding ? stats : undefined;
    },
    { intervalMs: 250, timeoutMs: (seconds + 120) * 1000 },
  );
}

/** Samples, every 50 ms until stopped: disk use of the files, and summed RSS of the processes. */
class Sampler {
  peakDisk = 0;
  peakRss = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(files: () => string[], pids: () => number[]) {
    const sample = (): void => {
      let disk = 0;
      for (const file of files()) {
        try {
          disk += statSync(file).size;
        } catch {
          // Renamed between the listing and the stat: counted under its new name.
        }
      }
      this.peakDisk = Math.max(this.peakDisk, disk);
      const rss = pids().reduce((sum, pid) => sum + (rssBytes(pid) ?? 0), 0);
      this.peakRss = Math.max(this.peakRss, rss);
    };
    sample();
    this.#timer = setInterval(sample, 50);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function totalCpu(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0);
}

/** The agent with stdout and stderr on /dev/null, spawned by the harness: the floor. */
async function devNull(ctx: BenchContext, spec: AgentSpec, seconds: number): Promise<Figures> {
  const nullFd = openSync("/dev/null", "w");
  let child: ChildProcess;
  try {
    child = spawn(NODE, fixtureArgs(spec), {
      detached: true,
      stdio: ["ignore", nullFd, nullFd],
      env: { ...process.env, ...fixtureEnv(spec, ctx.markerOf("floor")) },
    });
  } finally {
    closeSync(nullFd);
  }
  try {
    const stats = await untilFloodEnds(spec.port, seconds);
    return {
      peakDiskBytes: undefined,
      written: stats.written,
      writeMs: stats.writeMs,
      maxWriteMs: stats.maxWriteMs,
      errors: stats.errors,
      cpuPercent: undefined,
      peakRssBytes: undefined,
    };
  } finally {
    killHard(child.pid ?? 0, true);
    await delay(100);
    ctx.checkLeaks("flood /dev/null", ctx.markerOf("floor"));
  }
}

async function underTool(
  ctx: BenchContext,
  tool: Tool,
  spec: AgentSpec,
  seconds: number,
): Promise<Figures> {
  return ctx.withTool(tool, [spec], async () => {
    const pids = (): number[] => {
      const daemon = tool.daemonPid();
      return [...(daemon === undefined ? [] : [daemon]), ...(tool.helperPids?.() ?? [])];
    };
    const sampler = new Sampler(() => tool.agentLogFiles?.(spec.name) ?? [], pids);
    try {
      await tool.startAll();
      await tool.waitAllHealthy([spec.name], 60_000);
      const watched = pids();
      const cpu0 = totalCpu(watched);
      const t0 = nowMs();
      const stats = await untilFloodEnds(spec.port, seconds);
      const cpuPercent = ((totalCpu(watched) - cpu0) / ((nowMs() - t0) / 1000)) * 100;
      await delay(1_000); // what the tool still had buffered reaches the disk
      return {
        peakDiskBytes: sampler.peakDisk,
        written: stats.written,
        writeMs: stats.writeMs,
        maxWriteMs: stats.maxWriteMs,
        errors: stats.errors,
        cpuPercent,
        peakRssBytes: sampler.peakRss,
      };
    } finally {
      sampler.stop();
    }
  });
}

export async function flood(ctx: BenchContext, tools: readonly Tool[]): Promise<void> {
  const seconds = ctx.pick(30, 10);
  const spec: AgentSpec = {
    name: "flood",
    port: ctx.basePort,
    script: FLOOD_FIXTURE,
    env: { FLOOD_RATE: String(RATE_BYTES_PER_S), FLOOD_SECONDS: String(seconds) },
    logs: { maxBytes: MAX_BYTES, keep: KEEP },
  };
  const figures: Partial<Record<ToolName, Figures | { error: string }>> = {};
  for (const tool of tools) {
    const run =
      tool.name === "floor"
        ? () => devNull(ctx, spec, seconds)
        : () => underTool(ctx, tool, spec, seconds);
    try {
      const f = await run();
      figures[tool.name] = f;
      ctx.log(
        `  ${tool.name} flood: wrote ${(f.written / 1e6).toFixed(0)} MB, writes blocked ${f.writeMs.toFixed(0)} ms (longest ${f.maxWriteMs.toFixed(1)} ms), peak disk ${f.peakDiskBytes === undefined ? "n/a" : `${(f.peakDiskBytes / 1048576).toFixed(1)} MiB`}, CPU ${f.cpuPercent?.toFixed(1) ?? "n/a"}%, RSS ${f.peakRssBytes === undefined ? "n/a" : `${(f.peakRssBytes / 1048576).toFixed(0)} MiB`}${f.errors > 0 ? `, ${f.errors} write errors` : ""}`,
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      ctx.log(`  ${tool.name} flood: ERROR ${message.split("\n")[0]}`);
      figures[tool.name] = { error: message.split("\n")[0] ?? message };
    }
  }
  const cell = (tool: ToolName, pick: (f: Figures) => number | undefined): Cell | undefined => {
    const f = figures[tool];
    if (f === undefined) return undefined;
    if ("error" in f) return f;
    return pick(f) ?? "n/a";
  };
  const values = (pick: (f: Figures) => number | undefined): Partial<Record<ToolName, Cell>> => {
    const out: Partial<Record<ToolName, Cell>> = {};
    for (const tool of tools) {
      const value = cell(tool.name, pick);
      if (value !== undefined) out[tool.name] = value;
    }
    return out;
  };
  const floorWritten = cell("floor", (f) => f.written);
  const supervisordCpu = cell("supervisord", (f) => f.cpuPercent);
  const label = `1 agent at 10 MB/s for ${seconds} s`;
  const rows: Row[] = [
    {
      scenario: "flood",
      metric: `${label}: peak disk of its logs`,
      unit: "bytes",
      values: values((f) => f.peakDiskBytes),
      target: { kind: "at-most", bound: BOUND_BYTES },
      noRatios: true,
      note: `each tool asked for 10 MiB per file and 3 old files: atoll log_max_bytes = 10485760, log_keep = 3 (its defaults); supervisord stdout_logfile_maxbytes=10485760, stdout_logfile_backups=3; PM2 out_file/error_file (PM2 has no size limit of its own: that is the pm2-logrotate module, not installed, which checks every 30 s). Sum of the sizes of the agent's log files, sampled every 50 ms from the start until 1 s after the flood; the bound is (3 + 1) × 10 MiB + 64 KiB = ${(BOUND_BYTES / 1048576).toFixed(2)} MiB`,
    },
    {
      scenario: "flood",
      metric: `${label}: bytes the agent wrote`,
      unit: "bytes",
      values: values((f) => f.written),
      ...(typeof floorWritten === "number" && {
        target: { kind: "at-least", bound: 0.9 * floorWritten } as const,
      }),
      note: "the agent's own count (fs.writeSync on fd 1, whole 64 KiB writes, paced to 10 MB/s; a write that blocks puts it behind); floor = the same agent writing to /dev/null; target: within 10% of /dev/null",
    },
    {
      scenario: "flood",
      metric: `${label}: time its writes blocked (total)`,
      unit: "ms",
      values: values((f) => f.writeMs),
      note: "time the agent spent inside its write calls (including waits on EAGAIN, which Node's pipe handling turns a full pipe into), summed; the longest single write in the next row",
    },
    {
      scenario: "flood",
      metric: `${label}: longest single write`,
      unit: "ms",
      values: values((f) => f.maxWriteMs),
    },
    {
      scenario: "flood",
      metric: `${label}: daemon CPU while it floods`,
      unit: "percent",
      values: values((f) => f.cpuPercent),
      ...(typeof supervisordCpu === "number" && {
        target: { kind: "at-most", bound: supervisordCpu } as const,
      }),
      note: "user + system CPU of the daemon's process (atoll: plus its output keeper, which does the writing), from the agent being healthy to the end of its flood, in % of one core; target: below supervisord",
    },
    {
      scenario: "flood",
      metric: `${label}: daemon RSS while it floods (peak)`,
      unit: "bytes",
      values: values((f) => f.peakRssBytes),
      note: "peak of the summed RSS of the same processes, sampled every 50 ms",
    },
  ];
  ctx.rows.push(...rows);
}
