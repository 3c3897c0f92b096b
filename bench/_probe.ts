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
  for (let i = 0; i < 300; i++) await c.listAgents({});
  mem("300 lists");
  if (extra.includes("wait")) await delay(600_000);
  await d.stop(30_000);
} finally {
  if (d.running) d.kill();
  rmSync(dir, { recursive: true, force: true });
}
