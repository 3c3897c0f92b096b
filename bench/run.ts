/**
 * The benchmark harness: the same work on atoll-deploy, PM2 and supervisord, plus a floor where
 * the harness supervises the agents itself, in one run; prints a side-by-side table and writes
 * docs/benchmarks.md and docs/benchmarks.svg. See bench/README.md.
 *
 *   node bench/run.ts [--quick] [--tools floor,atoll,pm2,supervisord] [--base-port N] [--no-save] [scenario...]
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { BenchContext } from "./lib/context.ts";
import { REPO_ROOT } from "./lib/fixture.ts";
import { loadAverage, machineInfo } from "./lib/machine.ts";
import { findMarkedProcesses, killHard } from "./lib/procfs.ts";
import { errorsOf, markdown, type ReportInput, svgChart, textTable } from "./lib/report.ts";
import { nowMs } from "./lib/timing.ts";
import { findScenario, SCENARIOS, type Scenario } from "./scenarios/index.ts";
import { AtollTool } from "./tools/atoll.ts";
import { FloorTool } from "./tools/floor.ts";
import { Pm2Tool } from "./tools/pm2.ts";
import { SupervisordTool } from "./tools/supervisord.ts";
import { TOOL_NAMES, type Tool, type ToolName } from "./tools/tool.ts";

const USAGE = `usage: node bench/run.ts [options] [scenario...]

options:
  --quick              smaller counts, crash-loop skipped (about 3 minutes instead of about 10)
  --tools LIST         comma-separated subset of ${TOOL_NAMES.join(",")} (default: all)
  --base-port N        first agent port (default 18100; up to N+99 must be free)
  --save               write docs/benchmarks.md and docs/benchmarks.svg even for a partial run
  --no-save            print only, even for a complete run
                       (default: only a complete run, every scenario and tool without --quick, writes docs/)
  --list               list the scenarios and exit
  -h, --help           this text

scenarios (default: all): ${SCENARIOS.map((s) => s.name).join(", ")}
`;

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n\n${USAGE}`);
  process.exit(2);
}

const parsed = (() => {
  try {
    return parseArgs({
      options: {
        quick: { type: "boolean", default: false },
        tools: { type: "string" },
        "base-port": { type: "string", default: "18100" },
        save: { type: "boolean", default: false },
        "no-save": { type: "boolean", default: false },
        list: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: true,
    });
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error));
  }
})();

if (parsed.values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (parsed.values.list) {
  for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(10)} ${s.description}\n`);
  process.exit(0);
}

const quick = parsed.values.quick;
const basePort = Number(parsed.values["base-port"]);
if (!Number.isInteger(basePort) || basePort < 1024 || basePort > 65_000)
  fail("--base-port must be an integer in 1024..65000");
const wantedTools = (parsed.values.tools?.split(",").map((t) => t.trim()) ?? [
  ...TOOL_NAMES,
]) as ToolName[];
for (const t of wantedTools) if (!TOOL_NAMES.includes(t)) fail(`unknown tool ${t}`);
let scenarios: Scenario[];
if (parsed.positionals.length > 0) {
  scenarios = parsed.positionals.map(
    (name) => findScenario(name) ?? fail(`unknown scenario ${name}`),
  );
} else {
  scenarios = SCENARIOS.filter((s) => !(quick && s.full));
}

const runMarker = `bench-${process.pid}-${randomBytes(4).toString("hex")}`;
const ctx = new BenchContext({ runMarker, basePort, quick });
const allTools: Record<ToolName, Tool> = {
  floor: new FloorTool(ctx.markerOf("floor")),
  atoll: new AtollTool(ctx.markerOf("atoll")),
  pm2: new Pm2Tool(ctx.markerOf("pm2")),
  supervisord: new SupervisordTool(ctx.markerOf("supervisord")),
};

/** Ctrl-C: tear down whatever is running, kill what is left of this run, exit 130. */
let interrupted = false;
const onSignal = (signal: NodeJS.Signals): void => {
  if (interrupted) process.exit(130);
  interrupted = true;
  process.stderr.write(`\nbench: ${signal}, cleaning up (again to exit at once)\n`);
  void (async () => {
    await Promise.all([...ctx.active].map((t) => t.teardown().catch(() => undefined)));
    await (allTools.pm2 as Pm2Tool).teardown().catch(() => undefined);
    for (const p of findMarkedProcesses(runMarker)) killHard(p.pid, false);
    (allTools.pm2 as Pm2Tool).removeHome();
    process.exit(130);
  })();
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

const machine = machineInfo();
const loadBefore = loadAverage();
const loadSamples: number[] = [loadBefore];
setInterval(() => loadSamples.push(loadAverage()), 10_000).unref();
const t0 = nowMs();
const tools: Tool[] = [];
const skipped: Partial<Record<ToolName, string>> = {};
const versions: Partial<Record<ToolName, string>> = {};
const configs: Partial<Record<ToolName, string>> = {};
for (const name of wantedTools) {
  const tool = allTools[name];
  const reason = await tool.unavailable();
  if (reason !== undefined) {
    skipped[name] = reason;
    ctx.log(`SKIPPING ${name}: ${reason}`);
    continue;
  }
  tools.push(tool);
  versions[name] = await tool.version();
  configs[name] = tool.describeConfig();
}
if (loadBefore > 0.5) {
  ctx.log(
    `note: 1-minute load average is ${loadBefore.toFixed(2)} on ${machine.cores} cores; other work on this machine skews the figures`,
  );
}
ctx.log(
  `bench ${quick ? "--quick " : ""}on ${tools.map((t) => t.name).join(", ")}: ${scenarios.map((s) => s.name).join(", ")}`,
);

for (const scenario of scenarios) {
  ctx.log(`[${scenario.name}] ${scenario.description}`);
  try {
    await scenario.run(ctx, tools);
  } catch (error) {
    ctx.violations.push(
      `${scenario.name}: ${error instanceof Error ? error.message : String(error)}`,
    );
    ctx.log(
      `[${scenario.name}] aborted: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
(allTools.pm2 as Pm2Tool).removeHome();
ctx.checkLeaks("end of run");

const input: ReportInput = {
  rows: ctx.rows,
  tools: tools.map((t) => t.name),
  machine,
  versions,
  configs,
  skipped,
  mode: `${quick ? "--quick" : "full"}${parsed.positionals.length > 0 ? ` (${scenarios.map((s) => s.name).join(", ")})` : ""}`,
  durationS: (nowMs() - t0) / 1000,
  loadBefore,
  load: {
    mean: loadSamples.reduce((a, b) => a + b, 0) / loadSamples.length,
    max: Math.max(...loadSamples),
  },
  violations: ctx.violations,
};

process.stdout.write(`\n${textTable(input)}\n`);
const problems = [...errorsOf(ctx.rows), ...ctx.violations];
if (problems.length > 0)
  process.stdout.write(`\nErrors and violations:\n${problems.map((p) => `  - ${p}`).join("\n")}\n`);
// A partial run must not replace the report of a complete one (a missing tool still counts as
// complete: the report says it was skipped and why).
const complete = !quick && parsed.positionals.length === 0 && parsed.values.tools === undefined;
if (parsed.values.save || (complete && !parsed.values["no-save"])) {
  const docs = path.join(REPO_ROOT, "docs");
  writeFileSync(path.join(docs, "benchmarks.md"), markdown(input));
  writeFileSync(path.join(docs, "benchmarks.svg"), svgChart(input));
  process.stdout.write(
    `\nwrote docs/benchmarks.md and docs/benchmarks.svg (${Math.round(input.durationS)} s)\n`,
  );
} else {
  process.stdout.write("\nnot saved: partial run (--save writes docs/benchmarks.md anyway)\n");
}
// PM2's client library keeps timers alive after disconnect; everything of ours is closed.
process.exit(problems.length > 0 ? 1 : 0);
