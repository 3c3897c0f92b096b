/**
 * Bounded fault-injection soak of atoll-deploy (bench/README.md): 20 agents of mixed behaviour
 * on one daemon, random kill -9, hanging agents, SIGTERM-ignoring agents, output floods,
 * concurrent RPC storms and daemon SIGKILL + restart, for `--duration` seconds (default 300).
 * Then it asserts the end state and exits non-zero on any violation.
 *
 *   node bench/soak.ts [--duration S] [--seed N] [--base-port N] [--rss-limit-mib M] [--keep]
 */
import { randomInt } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { AgentState, HealthStatus } from "../gen/atoll/deployment/v1/agent_pb.ts";
import { busyPorts, freePort } from "./lib/ports.ts";
import { findMarkedProcesses, killHard } from "./lib/procfs.ts";
import { probeStatus } from "./lib/status-probe.ts";
import { delay, nowMs } from "./lib/timing.ts";
import { ACTION_WEIGHTS, Chaos } from "./soak/chaos.ts";
import { SoakDaemon } from "./soak/daemon.ts";
import { allowedFinalStates, finallyDeployed, soakFleet } from "./soak/fleet.ts";
import { Rng } from "./soak/rng.ts";
import { type StrayGroup, strayGroups } from "./soak/scans.ts";
import { RpcTally } from "./soak/tally.ts";
import { SoakWatcher } from "./soak/watcher.ts";
import { atollClient, stateName, writeDefinitions } from "./tools/atoll.ts";

const USAGE = `usage: node bench/soak.ts [--duration SECONDS] [--seed N] [--base-port N] [--rss-limit-mib M] [--daemon-restarts N] [--keep]

  --duration S        chaos time in seconds (default 300; the final checks add about a minute)
  --seed N            seed of the random choices (default random; printed, to replay a run)
  --base-port N       first agent port (default 18300; N..N+19 must be free)
  --rss-limit-mib M   daemon RSS bound asserted over the whole run (default 384)
  --daemon-restarts N SIGKILL + restart of the daemon N times, spread over the run (default 3;
                      0 keeps one daemon for the whole run, to watch its memory over time)
  --keep              keep the temp dir (definitions, state, daemon and agent logs) even on success
`;

const { values: opts } = (() => {
  try {
    return parseArgs({
      options: {
        duration: { type: "string", default: "300" },
        seed: { type: "string" },
        "base-port": { type: "string", default: "18300" },
        "rss-limit-mib": { type: "string", default: "384" },
        "daemon-restarts": { type: "string", default: "3" },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (error) {
    process.stderr.write(
      `soak: ${error instanceof Error ? error.message : String(error)}\n${USAGE}`,
    );
    process.exit(2);
  }
})();
if (opts.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const durationS = Number(opts.duration);
const seed = opts.seed === undefined ? randomInt(2 ** 31) : Number(opts.seed);
const basePort = Number(opts["base-port"]);
const rssLimitBytes = Number(opts["rss-limit-mib"]) * 1024 * 1024;
const daemonRestarts = Number(opts["daemon-restarts"]);
if (
  !(durationS >= 10 && durationS <= 3_600) ||
  !Number.isInteger(seed) ||
  !(basePort >= 1024 && basePort <= 65_000) ||
  !(rssLimitBytes > 0) ||
  !(Number.isInteger(daemonRestarts) && daemonRestarts >= 0 && daemonRestarts <= 20)
) {
  process.stderr.write(
    `soak: --duration must be 10..3600, --seed an integer, --base-port 1024..65000\n${USAGE}`,
  );
  process.exit(2);
}

const startedAt = nowMs();
const log = (line: string): void => {
  process.stderr.write(
    `[soak ${((nowMs() - startedAt) / 1000).toFixed(0).padStart(4)} s] ${line}\n`,
  );
};
const violations: string[] = [];
const marker = `soak-${process.pid}-${seed}`;
const rng = new Rng(seed);
const agents = soakFleet(basePort);
const ports = agents.map((a) => a.port);

const busy = await busyPorts(ports);
if (busy.length > 0) {
  process.stderr.write(`soak: ports in use: ${busy.join(", ")}; choose another --base-port\n`);
  process.exit(2);
}

const dir = mkdtempSync(path.join(os.tmpdir(), "atoll-soak-"));
const agentsDir = path.join(dir, "agents");
const stateDir = path.join(dir, "state");
writeDefinitions(
  agentsDir,
  agents,
  marker,
  (spec) => agents.find((a) => a.name === spec.name)?.deployment ?? {},
);
const daemon = new SoakDaemon({
  agentsDir,
  stateDir,
  basePort,
  maxAgents: agents.length,
  logPath: path.join(dir, "daemon.log"),
  listen: `127.0.0.1:${await freePort()}`,
});

/** Last resort on Ctrl-C or a crash of the soak itself: nothing of this run may survive it. */
async function emergencyCleanup(): Promise<void> {
  await daemon.shutdown(5_000).catch(() => undefined);
  for (const p of findMarkedProcesses(marker)) killHard(p.pid, false);
}
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${signal}: cleaning up`);
    void emergencyCleanup().then(() => process.exit(130));
  });
}

log(
  `seed ${seed}, ${agents.length} agents (${[...new Set(agents.map((a) => a.kind))].join(", ")}), ${durationS} s of chaos, dir ${dir}`,
);
await daemon.start();
const client = atollClient(daemon.address);
const tally = new RpcTally();
/** Stray process groups already reported (each is reported once, when first seen). */
const strayReported = new Set<number>();
const reportedPids = async (): Promise<ReadonlyMap<string, number> | undefined> => {
  const listed = await client.listAgents({}, { deadlineMs: 5_000 }).catch(() => undefined);
  return listed === undefined ? undefined : new Map(listed.agents.map((a) => [a.name, a.pid]));
};
const checkStrays = async (when: string): Promise<StrayGroup[]> => {
  const found = (await strayGroups(marker, reportedPids, 1_000)) ?? [];
  for (const g of found) {
    if (strayReported.has(g.pgid)) continue;
    strayReported.add(g.pgid);
    violations.push(
      `${when}: ${g.name} has process group ${g.pgid} that is not its current process (daemon reports pid ${g.reported}); a duplicate or an orphan`,
    );
  }
  return found;
};
const chaos = new Chaos({
  client,
  daemon,
  agents,
  rng,
  tally,
  marker,
  violations,
  log,
  checkStrays,
});
const watchers = [
  ...Array.from({ length: 4 }, (_, i) => new SoakWatcher(`watcher-all-${i}`, () => daemon.address)),
  new SoakWatcher(
    "watcher-normal",
    () => daemon.address,
    agents.filter((a) => a.kind === "normal").map((a) => a.name),
  ),
  new SoakWatcher(
    "watcher-faulty",
    () => daemon.address,
    agents.filter((a) => a.kind !== "normal").map((a) => a.name),
  ),
];
for (const w of watchers) w.start();

// --- deploy everything ---------------------------------------------------------------------
await Promise.all(
  agents.map((a) =>
    tally.run("Deploy", () => client.deploy({ name: a.name }, { deadlineMs: 60_000 })),
  ),
);
log(
  `deployed: ${(await client.listAgents({})).agents.filter((a) => a.state === AgentState.RUNNING).length} of ${agents.length} running`,
);

// --- chaos -----------------------------------------------------------------------------------
const chaosEnd = nowMs() + durationS * 1000;
const restartAt = Array.from(
  { length: daemonRestarts },
  (_, i) => nowMs() + ((i + 1) / (daemonRestarts + 1)) * durationS * 1000,
);
const inFlight = new Set<Promise<void>>();
let nextSample = 0;
let scanning: Promise<void> | undefined;
while (nowMs() < chaosEnd && !interrupted) {
  await delay(rng.int(200, 1_200));
  if (!daemon.running) {
    log("daemon is not running: starting it again");
    await daemon
      .start()
      .catch((e: unknown) => violations.push(`daemon restart failed: ${String(e)}`));
    continue;
  }
  if (restartAt.length > 0 && nowMs() >= (restartAt[0] as number)) {
    restartAt.shift();
    await chaos
      .restartDaemon()
      .catch((e: unknown) => violations.push(`daemon restart step failed: ${String(e)}`));
    continue;
  }
  if (nowMs() >= nextSample) {
    nextSample = nowMs() + 2_000;
    daemon.sampleRss();
    const elapsedS = ((nowMs() - startedAt) / 1000).toFixed(0);
    scanning ??= checkStrays(`at ${elapsedS} s`)
      .then(() => undefined)
      .finally(() => {
        scanning = undefined;
      });
  }
  if (inFlight.size >= 4) continue;
  const action = rng.weighted(ACTION_WEIGHTS);
  const run = chaos.run(action).catch((e: unknown) => {
    violations.push(`action ${action} threw: ${String(e)}`);
  });
  inFlight.add(run);
  void run.finally(() => inFlight.delete(run));
}
log(
  `chaos over: ${[...chaos.counts.entries()].map(([k, v]) => `${k} ${v}`).join(", ")}; waiting for ${inFlight.size} actions`,
);
await Promise.race([Promise.all(inFlight), delay(120_000)]);
await scanning;

// --- final desired state -----------------------------------------------------------------------
const final = { deadlineMs: 90_000 } as const;
for (let attempt = 0; attempt < 3; attempt++) {
  await Promise.all(
    agents.map((a) =>
      finallyDeployed(a)
        ? tally.run("Deploy", () => client.deploy({ name: a.name }, final))
        : tally.run("Undeploy", () => client.undeploy({ name: a.name }, final)),
    ),
  );
  const listedNow = (await client.listAgents({})).agents;
  const settled = agents.every((a) => {
    const s = listedNow.find((x) => x.name === a.name);
    return s !== undefined && allowedFinalStates(a).includes(stateName(s.state));
  });
  if (settled) break;
}
const settleDeadline = nowMs() + 30_000;
let listed = (await client.listAgents({})).agents;
const wrongState = (): string[] =>
  agents.flatMap((a) => {
    const s = listed.find((x) => x.name === a.name);
    const state = s === undefined ? "missing" : stateName(s.state);
    return allowedFinalStates(a).includes(state)
      ? []
      : [
          `${a.name} (${a.kind}) is ${state}${s?.stateReason ? ` ${s.stateReason}` : ""}, expected ${allowedFinalStates(a).join("/")}`,
        ];
  });
while (wrongState().length > 0 && nowMs() < settleDeadline) {
  await delay(500);
  listed = (await client.listAgents({})).agents;
}
for (const w of wrongState()) violations.push(`final state: ${w}`);
for (const a of agents) {
  if (allowedFinalStates(a).join() !== "RUNNING") continue;
  const s = listed.find((x) => x.name === a.name);
  if (s === undefined || s.state !== AgentState.RUNNING) continue;
  const answer = await probeStatus(a.port);
  if (s.health !== HealthStatus.HEALTHY)
    violations.push(`final state: ${a.name} RUNNING but health ${s.health}`);
  if (answer?.code !== 200 || answer.pid !== s.pid) {
    violations.push(
      `final state: ${a.name} reported pid ${s.pid} on port ${s.port}, but /status on ${a.port} answered ${answer === undefined ? "nothing" : `${answer.code} from pid ${answer.pid}`}`,
    );
  }
}

// --- watchers agree with the server (agents that are quiet now) -------------------------------
await delay(2_000);
listed = (await client.listAgents({})).agents;
for (const w of watchers) {
  for (const a of agents) {
    if (a.kind === "hang" || a.kind === "crash-after") continue; // still changing by design
    const server = listed.find((x) => x.name === a.name);
    const seen = w.view.get(a.name);
    if (server === undefined || seen === undefined) continue;
    const expected = `${stateName(server.state)}/${server.pid}`;
    const got = `${seen.state}/${seen.pid}`;
    if (expected !== got)
      violations.push(
        `${w.id}: sees ${a.name} as ${got}, server says ${expected} (an event was lost)`,
      );
  }
  violations.push(...w.problems());
}

// --- log files bounded --------------------------------------------------------------------------
const logFiles = readdirSync(path.join(stateDir, "logs"));
for (const a of agents) {
  const files = logFiles.filter((f) => f === `${a.name}.log` || f.startsWith(`${a.name}.log.`));
  if (files.length > 4)
    violations.push(
      `logs: ${a.name} has ${files.length} log files (current + at most 3 rotated expected)`,
    );
}

// --- undeploy everything, shut down, nothing left -----------------------------------------------
await Promise.all(
  agents.map((a) => tally.run("Undeploy", () => client.undeploy({ name: a.name }, final))),
);
const notStopped = (await client.listAgents({})).agents.filter(
  (s) => s.state !== AgentState.STOPPED,
);
for (const s of notStopped)
  violations.push(`after undeploy-all: ${s.name} is ${stateName(s.state)}`);
for (const w of watchers) await w.stop();
client.close();
daemon.sampleRss();
const exit = await daemon.shutdown(60_000);
if (exit.code !== 0)
  violations.push(
    `daemon shutdown after undeploy-all exited ${exit.code ?? exit.signal} (expected 0)`,
  );
violations.push(...daemon.unexpectedExits);
let leaked = findMarkedProcesses(marker);
for (let i = 0; i < 20 && leaked.length > 0; i++) {
  await delay(100);
  leaked = findMarkedProcesses(marker);
}
if (leaked.length > 0) {
  violations.push(
    `leaked processes: ${leaked.map((p) => `${p.pid} (pgid ${p.pgrp}) ${p.cmd.slice(-50)}`).join("; ")}`,
  );
  for (const p of leaked) killHard(p.pid, false);
}
const stillBusy = await busyPorts([...ports, Number(daemon.address.split(":")[1])]);
if (stillBusy.length > 0)
  violations.push(`ports still bound after shutdown: ${stillBusy.join(", ")}`);
const allRss = daemon.rss.flat();
const maxRss = Math.max(0, ...allRss);
if (maxRss > rssLimitBytes)
  violations.push(
    `daemon RSS reached ${(maxRss / 2 ** 20).toFixed(1)} MiB (limit ${opts["rss-limit-mib"]} MiB)`,
  );
violations.push(...tally.unexpected.map((u) => `unexpected RPC status: ${u}`));

// --- summary ------------------------------------------------------------------------------------
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;
const out = [
  "",
  `atoll-deploy soak: ${durationS} s of chaos, seed ${seed}, ${agents.length} agents, total ${((nowMs() - startedAt) / 1000).toFixed(0)} s`,
  `  actions: ${[...chaos.counts.entries()].map(([k, v]) => `${k} ${v}`).join(", ")}`,
  `  daemon: ${daemon.incarnations} incarnations; adoption checks ${chaos.adoptionChecks}, adopted with the same pid ${chaos.adopted}`,
  `  daemon RSS per incarnation, at 0/25/50/75/100% of its life (max): ${daemon.rss
    .map((r) =>
      r.length === 0
        ? "—"
        : `${[0, 0.25, 0.5, 0.75, 1].map((q) => mib(r[Math.round(q * (r.length - 1))] ?? 0)).join(" → ")} (max ${mib(Math.max(...r))}, ${r.length} samples)`,
    )
    .join("; ")}; limit ${opts["rss-limit-mib"]} MiB`,
  `  RPCs: ${tally.total}`,
  ...tally.lines().map((l) => `    ${l}`),
  `  watchers: ${watchers.map((w) => `${w.id} ${w.changes} changes, ${w.connects} connections, ${w.tooSlow} too-slow`).join("; ")}`,
  `  watch errors: ${[...new Set(watchers.flatMap((w) => [...w.errors.entries()].map(([k, v]) => `${k} ×${v}`)))].join("; ") || "none"}`,
  violations.length === 0
    ? "  RESULT: PASS (no violation)"
    : `  RESULT: FAIL, ${violations.length} violation(s):`,
  ...violations.map((v) => `    - ${v}`),
  "",
];
process.stdout.write(out.join("\n"));
if (violations.length > 0 || opts.keep)
  process.stdout.write(`  files kept in ${dir} (daemon.log, state/logs)\n`);
else rmSync(dir, { recursive: true, force: true });
process.exit(violations.length > 0 ? 1 : 0);
