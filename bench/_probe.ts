// Temporary: RSS investigation. Not committed.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { AtollDaemon, atollClient, writeDefinitions } from "./tools/atoll.ts";
import { makeAgents } from "./lib/fixture.ts";
import { waitAllHealthy } from "./lib/status-probe.ts";
import { delay } from "./lib/timing.ts";

const n = Number(process.argv[2] ?? 100);
const extra = process.argv.slice(3);
const dir = mkdtempSync(path.join(os.tmpdir(), "probe-"));
const agents = makeAgents(n, 26100);
writeDefinitions(path.join(dir, "agents"), agents, "probe");
if (process.env.DAEMON_OPTS) process.env.NODE_OPTIONS = process.env.DAEMON_OPTS;
const d = new AtollDaemon({ agentsDir: path.join(dir, "agents"), stateDir: dir, basePort: 26100, maxAgents: n, logPath: path.join(dir, "d.log"), extraArgs: [] });
const mem = (label: string) => {
  const s = readFileSync(`/proc/${d.pid}/status`, "utf8");
  const g = (k: string) => Math.round(Number(s.match(new RegExp(`${k}:\\s+(\\d+)`))?.[1]) / 1024);
  console.log(label.padEnd(12), "rss", g("VmRSS"), "anon", g("RssAnon"), "file", g("RssFile"), "threads", s.match(/Threads:\s+(\d+)/)?.[1]);
};
try {
  const address = await d.address;
  const c = atollClient(address);
  await delay(1500); mem("idle");
  await Promise.all(agents.map((a) => c.deploy({ name: a.name })));
  await waitAllHealthy(agents.map((a) => a.port), { timeoutMs: 60_000 });
  mem("deployed");
  await delay(3000); mem("+3s");
  const gcLines: string[] = [];
  d.child.stdout?.on("data", (b: Buffer) => gcLines.push(...String(b).split("\n").filter((l) => l.includes("ms: "))));
  for (const kind of ["get", "list"]) {
    const t: number[] = [];
    for (let i = 0; i < 500; i++) {
      const t0 = performance.now();
      if (kind === "get") await c.getStatus({ name: agents[i % n]!.name }); else await c.listAgents({});
      t.push(performance.now() - t0);
    }
    t.sort((a, b) => a - b);
    console.log(kind, "p50", t[250]!.toFixed(2), "p99", t[495]!.toFixed(2), "max", t[499]!.toFixed(2));
  }
  mem("after calls");
  {
    const { Client, credentials } = await import("@grpc/grpc-js");
    const raw = new Client(address, credentials.createInsecure());
    const call = () => new Promise<Buffer>((res, rej) => raw.makeUnaryRequest("/atoll.deployment.v1.DeploymentService/ListAgents", (x: Buffer) => x, (b: Buffer) => b, Buffer.alloc(0), (e, v) => (e ? rej(e) : res(v as Buffer))));
    for (let i = 0; i < 50; i++) await call();
    const t: number[] = [];
    for (let i = 0; i < 500; i++) { const t0 = performance.now(); await call(); t.push(performance.now() - t0); }
    t.sort((a, b) => a - b);
    console.log("raw list p50", t[250]!.toFixed(2), "p99", t[495]!.toFixed(2), "max", t[499]!.toFixed(2), "outliers>2ms", t.filter((x) => x > 2).length);
    raw.close();
  }
  console.log(gcLines.length, "gc lines; slowest:", gcLines.map((l) => [Number(/([\d.]+) \/ [\d.]+ ms/.exec(l)?.[1] ?? 0), l] as const).sort((a, b) => b[0] - a[0]).slice(0, 5).map((x) => x[1].trim().slice(0, 140)));
  if (extra.includes("wait")) await delay(600_000);
  await d.stop(30_000);
} finally {
  if (d.running) d.kill();
  rmSync(dir, { recursive: true, force: true });
}
