/**
 * What containment and the probe's port check cost (issue 13), not a test:
 *
 * - spawn: `spawnAgent` of `/bin/true` until its exit, directly and through the cgroup
 *   trampoline (v2, and v1 where writable), the cgroup's mkdir and rmdir included; and the same
 *   for the fixture agent until it answers `READY` (what an agent start really waits for);
 * - the probe's ownership check (`foreignListener`) after a successful probe, with the agent's
 *   tree in a cgroup and found through /proc by its token, beside the HTTP probe it follows;
 * - one /proc scan for the processes carrying a token (what a tree without a cgroup costs per
 *   check while it is being stopped), with the number of processes on the machine.
 *
 *   node bench/containment.ts [--spawns 100] [--checks 2000]
 *
 * The machine is shared: the report prints the 1-minute load average before and after.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { Cgroups, type CgroupVersion } from "../src/platform/cgroups.ts";
import { probeHttp } from "../src/platform/http-probe.ts";
import { createPortOwnerCheck, foreignListener } from "../src/platform/port-owner.ts";
import { findProcessesWithEnv } from "../src/platform/proc-info.ts";
import { type ProcessTree, processTree } from "../src/platform/process-tree.ts";
import { spawnAgent } from "../src/platform/spawn-agent.ts";
import { terminateGroup } from "../src/platform/terminate-group.ts";
import { FIXTURE as FAULT_AGENT } from "./lib/fixture.ts";
import { loadAverage } from "./lib/machine.ts";
import { delay, nowMs, quantile } from "./lib/timing.ts";

const { values } = parseArgs({
  options: {
    spawns: { type: "string", default: "100" },
    checks: { type: "string", default: "2000" },
  },
});
const SPAWNS = Number(values.spawns);
const CHECKS = Number(values.checks);
const uid = process.getuid?.() ?? 0;
const dir = mkdtempSync(path.join(os.tmpdir(), "atoll-bench-containment-"));
const logFile = path.join(dir, "out.log");

const ms = (value: number): string => `${value.toFixed(2)} ms`;
const us = (value: number): string => `${(value * 1000).toFixed(0)} µs`;
function line(metric: string, samples: readonly number[], unit = ms): void {
  process.stdout.write(
    `  ${metric}: p50 ${unit(quantile(samples, 0.5))}, p90 ${unit(quantile(samples, 0.9))}, p99 ${unit(quantile(samples, 0.99))} (n=${samples.length})\n`,
  );
}

function open(version: CgroupVersion): Cgroups | undefined {
  return Cgroups.open({ baseName: `atoll-deploy-bench${process.pid}`, versions: [version] });
}

/** Spawn of `argv` until the process has exited (or printed READY), optionally in a cgroup. */
async function spawnOnce(argv: string[], cgroups: Cgroups | undefined): Promise<number> {
  const start = nowMs();
  const cgroup = cgroups?.create("bench");
  const agent = await spawnAgent({
    argv,
    cwd: dir,
    env: { PATH: process.env.PATH ?? "", PORT: "0" },
    output: { file: logFile },
    cgroup,
  });
  if (argv[0] === "/bin/true") await agent.exited;
  else {
    while (!readFileSync(logFile, "utf8").includes(`READY`)) await delay(1);
  }
  const elapsed = nowMs() - start;
  if (argv[0] !== "/bin/true") {
    await terminateGroup(agent.pgid, { stopTimeoutMs: 2_000, exited: agent.exited });
  }
  cgroup?.remove();
  rmSync(logFile, { force: true });
  return elapsed;
}

/**
 * `count` spawns, each `gapMs` after the last one ended. The gap matters: moving a process into
 * a cgroup takes the kernel's cgroup_threadgroup_rwsem for writing, which costs an RCU grace
 * period (about 10 ms) unless another move happened just before; a burst of starts pays it once.
 */
async function spawnSeries(
  argv: string[],
  cgroups: Cgroups | undefined,
  count: number,
  gapMs: number,
) {
  for (let i = 0; i < 3; i++) await spawnOnce(argv, cgroups); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    if (gapMs > 0) await delay(gapMs);
    samples.push(await spawnOnce(argv, cgroups));
  }
  return samples;
}

async function checkSeries(tree: ProcessTree, port: number): Promise<void> {
  const cached = createPortOwnerCheck({ maxAgeMs: Number.POSITIVE_INFINITY });
  // Each call's probe "began" now, so the shared check reads the tables again unless remembered.
  const fresh = createPortOwnerCheck({ maxAgeMs: 0 });
  for (const [name, check] of [
    ["full, on the event loop: /proc/net/tcp{,6} + fds", async () => foreignListener(port, tree)],
    ["full, tables read in the thread pool", () => fresh(port, tree, nowMs())],
    ["remembered: the tree's fds only", () => cached(port, tree, nowMs())],
  ] as const) {
    const samples: number[] = [];
    for (let i = 0; i < CHECKS; i++) {
      const start = nowMs();
      const holder = await check();
      samples.push(nowMs() - start);
      if (holder !== undefined)
        throw new Error(`the agent's own port reported held by ${holder.pid}`);
    }
    line(`  ownership check, tree by ${tree.mechanism}, ${name}`, samples, us);
  }
}

process.stdout.write(
  `containment benchmark: load average ${loadAverage().toFixed(2)}, ${readdirSync("/proc").filter((n) => /^\d+$/.test(n)).length} processes\n`,
);
const v2 = open(2);
const v1 = open(1);
try {
  for (const [what, gapMs] of [
    ["back to back (a burst of starts)", 0],
    ["200 ms apart (isolated starts)", 200],
  ] as const) {
    process.stdout.write(`spawn until exit, /bin/true, ${what}:\n`);
    const direct = await spawnSeries(["/bin/true"], undefined, SPAWNS, gapMs);
    line("direct", direct);
    for (const [name, cgroups] of [
      ["cgroup v2 trampoline", v2],
      ["cgroup v1 trampoline", v1],
    ] as const) {
      if (cgroups === undefined) continue;
      const samples = await spawnSeries(["/bin/true"], cgroups, SPAWNS, gapMs);
      line(name, samples);
      process.stdout.write(
        `    added: ${ms(quantile(samples, 0.5) - quantile(direct, 0.5))} at the median\n`,
      );
    }
  }
  process.stdout.write("spawn until READY, the fixture agent, 200 ms apart:\n");
  const agentArgv = [process.execPath, FAULT_AGENT];
  const count = Math.max(10, Math.round(SPAWNS / 5));
  const agentDirect = await spawnSeries(agentArgv, undefined, count, 200);
  line("direct", agentDirect);
  if (v2 !== undefined) {
    const samples = await spawnSeries(agentArgv, v2, count, 200);
    line("cgroup v2 trampoline", samples);
  }

  process.stdout.write("probe of a listening agent, and the ownership check after it:\n");
  const marker = { key: "ATOLL_BENCH_TOKEN", value: `bench-${process.pid}`, uid };
  const cgroup = v2?.create("probe") ?? v1?.create("probe");
  const agent = await spawnAgent({
    argv: agentArgv,
    cwd: dir,
    env: { PATH: process.env.PATH ?? "", PORT: "0", [marker.key]: marker.value },
    output: { file: logFile },
    cgroup,
  });
  let port = 0;
  while (port === 0) {
    port = Number(/READY (\d+)/.exec(readFileSync(logFile, "utf8"))?.[1] ?? 0);
    await delay(5);
  }
  const probes: number[] = [];
  for (let i = 0; i < 200; i++) {
    const start = nowMs();
    const result = await probeHttp({
      host: "127.0.0.1",
      port,
      path: "/status",
      timeoutMs: 2_000,
      signal: new AbortController().signal,
    });
    probes.push(nowMs() - start);
    if (!result.ok) throw new Error(result.message);
  }
  line("HTTP probe", probes);
  const tcpBytes = ["/proc/net/tcp", "/proc/net/tcp6"]
    .map((f) => readFileSync(f).length)
    .reduce((a, b) => a + b, 0);
  process.stdout.write(`  (/proc/net/tcp + tcp6: ${tcpBytes} bytes)\n`);
  if (cgroup !== undefined) await checkSeries(processTree({ group: agent.pid, cgroup }), port);
  await checkSeries(processTree({ group: agent.pid, marker }), port);

  process.stdout.write("one /proc scan for the processes carrying a token:\n");
  const scans: number[] = [];
  for (let i = 0; i < 200; i++) {
    const start = nowMs();
    findProcessesWithEnv(marker.key, marker.value, uid);
    scans.push(nowMs() - start);
  }
  line("scan", scans);
  await terminateGroup(agent.pgid, {
    stopTimeoutMs: 2_000,
    exited: agent.exited,
    tree: processTree({ group: agent.pid, cgroup }),
  });
  cgroup?.remove();
} finally {
  v2?.close();
  v1?.close();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`load average after: ${loadAverage().toFixed(2)}\n`);
}
