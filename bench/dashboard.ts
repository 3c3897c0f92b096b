/**
 * The HTTP listener's benchmark (issue 16), not a test: with N agents (100) running under the real
 * daemon, it measures
 *
 * - a `/metrics` scrape: p50/p99 over sequential scrapes (goal: p99 ≤ 10 ms), and the text's size;
 * - `GetStatus` p99 over gRPC with no scraping, then while `/metrics` is scraped every second
 *   (goal: no visible effect);
 * - `ListAgents` p99 over gRPC and over the Connect protocol (binary, HTTP/1.1, connect-node's
 *   client), plus gRPC-Web and Connect JSON for reference (goal: Connect within 2× of gRPC);
 * - the dashboard's first contentful paint and the time until its table holds every agent, in
 *   headless Chromium (goal: ≤ 1 s), median and worst of a few fresh loads.
 *
 *   node bench/dashboard.ts [--agents 100] [--base-port 18100] [--calls 2000]
 *
 * The machine is shared: the report prints the 1-minute load average before and after.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { DeploymentService } from "../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { launchChromium } from "../tests/e2e/browser.ts";
import { makeAgents } from "./lib/fixture.ts";
import { loadAverage } from "./lib/machine.ts";
import { findMarkedProcesses, killHard } from "./lib/procfs.ts";
import { waitAllHealthy } from "./lib/status-probe.ts";
import { delay, nowMs, quantile, withTimeout } from "./lib/timing.ts";
import { AtollDaemon, atollClient, writeDefinitions } from "./tools/atoll.ts";

const { values } = parseArgs({
  options: {
    agents: { type: "string", default: "100" },
    "base-port": { type: "string", default: "18100" },
    calls: { type: "string", default: "2000" },
    loads: { type: "string", default: "5" },
  },
});
const AGENTS = Number(values.agents);
const BASE_PORT = Number(values["base-port"]);
const CALLS = Number(values.calls);
const LOADS = Number(values.loads);
/** A series stops after this long even when it has not made all its calls. */
const SERIES_CAP_MS = 8_000;

const rows: [string, string, string][] = [];
function report(metric: string, figure: string, goal = ""): void {
  rows.push([metric, figure, goal]);
  process.stdout.write(`  ${metric}: ${figure}${goal === "" ? "" : `  (${goal})`}\n`);
}
const ms = (value: number): string => `${value.toFixed(2)} ms`;

/** Sequential calls of `call` until `count` or the cap; the latency of each, ms. */
async function series(call: () => Promise<unknown>, count = CALLS): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < 20; i++) await call(); // warm-up: connections, JIT, caches
  const stopAt = nowMs() + SERIES_CAP_MS;
  while (latencies.length < count && nowMs() < stopAt) {
    const start = nowMs();
    await call();
    latencies.push(nowMs() - start);
  }
  return latencies;
}

function p(latencies: readonly number[], q: number): number {
  return quantile(latencies, q);
}

const runMarker = `dashboard-bench-${process.pid}`;
const dir = mkdtempSync(path.join(os.tmpdir(), "bench-dashboard-"));
const agents = makeAgents(AGENTS, BASE_PORT);
writeDefinitions(path.join(dir, "agents"), agents, runMarker);
const loadBefore = loadAverage();
process.stdout.write(
  `dashboard benchmark: ${AGENTS} agents, 1-min load average ${loadBefore.toFixed(2)}, ${os.cpus().length} cores\n`,
);
const daemon = new AtollDaemon({
  agentsDir: path.join(dir, "agents"),
  stateDir: path.join(dir, "state"),
  basePort: BASE_PORT,
  maxAgents: AGENTS,
  logPath: path.join(dir, "daemon.log"),
  httpListen: "127.0.0.1:0",
});

try {
  const address = await withTimeout("the daemon to listen", daemon.address, 30_000);
  const url = await withTimeout("the HTTP listener", daemon.httpUrl, 5_000);
  const grpc = atollClient(address);
  const names = agents.map((a) => a.name);
  await Promise.all(names.map((name) => grpc.deploy({ name })));
  await waitAllHealthy(
    agents.map((a) => a.port),
    { timeoutMs: 120_000 },
  );
  process.stdout.write(`  ${AGENTS} agents running; measuring\n`);

  // --- /metrics ------------------------------------------------------------------------------
  let size = 0;
  const scrape = async (): Promise<void> => {
    const response = await fetch(`${url}/metrics`);
    size = (await response.text()).length;
  };
  const scrapes = await series(scrape, 500);
  report("/metrics scrape p50", ms(p(scrapes, 0.5)));
  report("/metrics scrape p99", ms(p(scrapes, 0.99)), "goal ≤ 10 ms");
  report("/metrics size", `${(size / 1024).toFixed(1)} KiB`);

  // --- GetStatus with and without scrapes ------------------------------------------------------
  const one = names[Math.floor(names.length / 2)] ?? "a000";
  const quiet = await series(() => grpc.getStatus({ name: one }));
  report("GetStatus p99, no scraping", ms(p(quiet, 0.99)));
  const scraper = setInterval(() => void scrape(), 1000);
  const scraped = await series(() => grpc.getStatus({ name: one }));
  clearInterval(scraper);
  report("GetStatus p99, /metrics scraped every second", ms(p(scraped, 0.99)), "goal: no effect");

  // --- ListAgents: gRPC vs Connect -------------------------------------------------------------
  const grpcList = await series(() => grpc.listAgents({}));
  const clients: [string, Client<typeof DeploymentService>][] = [
    [
      "Connect binary",
      createClient(
        DeploymentService,
        createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: true }),
      ),
    ],
    [
      "Connect JSON",
      createClient(
        DeploymentService,
        createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: false }),
      ),
    ],
    [
      "gRPC-Web",
      createClient(DeploymentService, createGrpcWebTransport({ baseUrl: url, httpVersion: "1.1" })),
    ],
  ];
  const grpcP99 = p(grpcList, 0.99);
  report("ListAgents p50, gRPC", ms(p(grpcList, 0.5)));
  report("ListAgents p99, gRPC", ms(grpcP99));
  for (const [label, client] of clients) {
    const latencies = await series(() => client.listAgents({}));
    const p99 = p(latencies, 0.99);
    report(`ListAgents p50, ${label}`, ms(p(latencies, 0.5)));
    report(
      `ListAgents p99, ${label}`,
      `${ms(p99)} (${(p99 / grpcP99).toFixed(2)}× gRPC)`,
      label === "Connect binary" ? "goal ≤ 2× gRPC" : "",
    );
  }

  // --- the page --------------------------------------------------------------------------------
  const browser = await launchChromium();
  try {
    const paints: number[] = [];
    const complete: number[] = [];
    for (let i = 0; i < LOADS; i++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const page = await context.newPage();
      // Records when the table first holds every agent (init scripts are not subject to CSP).
      await page.addInitScript((count: number) => {
        const w = window as unknown as { __tableCompleteMs?: number };
        const check = (): void => {
          if (
            w.__tableCompleteMs === undefined &&
            document.querySelectorAll("tbody tr").length >= count
          ) {
            w.__tableCompleteMs = performance.now();
          }
        };
        new MutationObserver(check).observe(document, { childList: true, subtree: true });
      }, AGENTS);
      await page.goto(`${url}/`);
      await page.waitForFunction(
        () => (window as unknown as { __tableCompleteMs?: number }).__tableCompleteMs !== undefined,
      );
      const timings = await page.evaluate(() => ({
        fcp: performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? Number.NaN,
        table: (window as unknown as { __tableCompleteMs: number }).__tableCompleteMs,
      }));
      paints.push(timings.fcp);
      complete.push(timings.table);
      await context.close();
    }
    report(`page first contentful paint, median of ${LOADS}`, ms(p(paints, 0.5)));
    report(
      `page table with ${AGENTS} agents, median / worst of ${LOADS}`,
      `${ms(p(complete, 0.5))} / ${ms(Math.max(...complete))}`,
      "goal ≤ 1 s",
    );
  } finally {
    await browser.close();
  }
  grpc.close();
} finally {
  const { code, signal } = await daemon.stop(60_000);
  await delay(200);
  const leaked = findMarkedProcesses(runMarker);
  for (const proc of leaked) killHard(proc.pid, true);
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(
    `  daemon exited ${code ?? signal}; leaked agents: ${leaked.length}; 1-min load average after ${loadAverage().toFixed(2)}\n`,
  );
}

process.stdout.write(`\n| metric | figure | goal |\n| --- | ---: | --- |\n`);
for (const [metric, figure, goal] of rows)
  process.stdout.write(`| ${metric} | ${figure} | ${goal} |\n`);
