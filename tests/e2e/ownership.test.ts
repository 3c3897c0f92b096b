/**
 * Which processes are ours (issue 13; docs/operations.md, "Which processes are ours"), probed as
 * an attacker or a careless operator would: a process of another user carrying the old marker
 * and an agent's name, a state.json forged to name a foreign pid with its real start time, or a
 * process group whose leader is gone and whose member is foreign. The daemon adopts and signals
 * only processes proven its own: the daemon's user and the agent's token from the state file's
 * secret (plus, for a recorded pid, its start time and command line).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, statSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { isProcessAlive, readProcessStartTime } from "../../src/platform/proc-info.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { waitUntil } from "../platform/helpers.ts";
import { FAULT_AGENT, faultAgentToml } from "../supervisor/harness.ts";
import { type Daemon, startDaemon, workspace } from "./daemon.ts";

const daemons: Daemon[] = [];
/** Agent process groups the daemons started. */
const pids = new Set<number>();
/** Processes this test started itself (impostors, foreign processes), ended by pid. */
const started: ChildProcess[] = [];
let cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop("SIGTERM");
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  for (const child of started.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }
  for (const extra of foreignOrphans.splice(0)) {
    if (isProcessAlive(extra)) process.kill(extra, "SIGKILL");
  }
  for (const c of cleanups.splice(0)) await c();
  cleanups = [];
  expect(left).toEqual([]);
});

/** Processes not our children (reparented to init), ended by pid. */
const foreignOrphans: number[] = [];

const basePort = 22_000 + (process.pid % 40) * 25;

async function setup(names: string[]) {
  const ws = await workspace(
    Object.fromEntries(names.map((n) => [n, { file: "agent.toml", text: faultAgentToml(n) }])),
  );
  cleanups.push(ws.cleanup);
  const args = [
    "--agents-dir",
    ws.agentsDir,
    "--state-dir",
    ws.stateDir,
    "--base-port",
    String(basePort),
    "--health-check-interval",
    "0.2",
  ];
  return { ws, args, statePath: path.join(ws.stateDir, "state.json") };
}

async function start(args: string[]): Promise<Daemon> {
  const daemon = await startDaemon(args);
  daemons.push(daemon);
  return daemon;
}

/** Stops `daemon` gracefully (it is no longer stopped by afterEach). */
async function stopNow(daemon: Daemon, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  daemons.splice(daemons.indexOf(daemon), 1);
  await daemon.stop(signal);
}

const AS_NOBODY = ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"];

/** The real uid of `pid` (read here: this file is a black-box probe, like the issue's). */
function realUid(pid: number): number | undefined {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  } catch {
    return undefined;
  }
}

/** The argv of `pid` as /proc/<pid>/cmdline has it. */
function commandLine(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);
}

/**
 * `argv` run as `nobody` through setpriv (which execs it: same pid), in a session of its own,
 * with `env`; resolves with its pid once it prints a line matching `ready` (when given).
 */
async function asNobody(
  argv: string[],
  env: Record<string, string>,
  ready?: RegExp,
): Promise<{ child: ChildProcess; pid: number; line: string }> {
  const child = spawn("setpriv", [...AS_NOBODY, ...argv], {
    detached: true,
    stdio: ["ignore", "pipe", "ignore"],
    env: { PATH: process.env.PATH ?? "", ...env },
  });
  started.push(child);
  const pid = child.pid ?? 0;
  let line = "";
  if (ready !== undefined && child.stdout !== null) {
    for await (const text of createInterface({ input: child.stdout })) {
      if (ready.test(text)) {
        line = text;
        break;
      }
    }
  }
  await waitUntil(() => realUid(pid) === 65534, "the process runs as nobody");
  return { child, pid, line };
}

async function readState(statePath: string) {
  return JSON.parse(await readFile(statePath, "utf8"));
}

/** setpriv to another user needs root (as on the CI machine, and as a supervisor often runs). */
const asRoot = process.getuid?.() === 0;

describe.skipIf(!asRoot)("which processes are ours", () => {
  it("never adopts a process of another user carrying the old marker and an agent's name", async () => {
    const { ws, args, statePath } = await setup(["a"]);
    const first = await start(args);
    await first.client.listAgents({});
    await stopNow(first);
    // The impostor listens on the port the agent would get, as the issue found it.
    const impostor = await asNobody(
      [process.execPath, FAULT_AGENT],
      {
        PORT: String(basePort),
        ATOLL_AGENT_NAME: "a",
        ATOLL_AGENT_PORT: String(basePort),
        ATOLL_SUPERVISOR_STATE_DIR: ws.stateDir,
      },
      /^READY/,
    );

    const second = await start(args);
    const status = (await second.client.getStatus({ name: "a" })).agent;
    expect(status).toMatchObject({ state: AgentState.DISCOVERED, pid: 0 });
    expect((await readState(statePath)).agents.a).toMatchObject({ desired: "stopped", pid: 0 });
    expect(second.stderr()).toMatch(/a process claims to be an agent of this state dir/);
    // Deploying starts the real agent, on another port: the impostor keeps its own.
    const deployed = (await second.client.deploy({ name: "a" })).agent;
    pids.add(deployed?.pid ?? 0);
    expect(deployed?.pid).not.toBe(impostor.pid);
    expect(deployed?.port).not.toBe(basePort);
    await second.client.undeploy({ name: "a" });
    expect(isProcessAlive(impostor.pid)).toBe(true);
  });

  it("neither adopts nor signals a foreign process a forged state.json names with its real start time", async () => {
    const { args, statePath } = await setup(["a", "b"]);
    const first = await start(args);
    await first.client.listAgents({});
    await stopNow(first);
    // One of another user, one of the daemon's own user without the agent's token.
    const foreign = await asNobody([process.execPath, FAULT_AGENT], {
      PORT: String(basePort + 10),
    });
    const sameUser = spawn("sleep", ["1000"], { detached: true, stdio: "ignore" });
    started.push(sameUser);
    const forge = (pid: number, port: number) => ({
      desired: "running",
      port,
      pid,
      startTimeTicks: readProcessStartTime(pid),
      startTimeMs: Date.now(),
      command: commandLine(pid),
    });
    const state = await readState(statePath);
    state.agents.a = forge(foreign.pid, basePort + 10);
    state.agents.b = forge(sameUser.pid ?? 0, basePort + 11);
    await writeFile(statePath, JSON.stringify(state));

    const second = await start(args);
    // Both are started afresh (they were deployed), never adopted.
    for (const name of ["a", "b"]) {
      for await (const event of second.client.watchHealth({ names: [name] })) {
        if (event.agent?.pid) pids.add(event.agent.pid);
        if (
          event.agent?.state === AgentState.RUNNING &&
          event.agent.health === HealthStatus.HEALTHY
        ) {
          expect(event.agent.stateReason).not.toBe("ADOPTED");
          expect([foreign.pid, sameUser.pid]).not.toContain(event.agent.pid);
          break;
        }
      }
    }
    expect(second.stderr()).toMatch(/the recorded process of an agent is not proven ours/);
    await second.client.undeploy({ name: "a" });
    await second.client.undeploy({ name: "b" });
    await stopNow(second);
    expect(isProcessAlive(foreign.pid)).toBe(true);
    expect(isProcessAlive(sameUser.pid ?? 0)).toBe(true);
  });

  it("never signals a foreign member of a recorded group whose leader is gone", async () => {
    const { args, statePath } = await setup(["a"]);
    const first = await start(args);
    await first.client.listAgents({});
    await stopNow(first);
    // A group of another user whose leader exits at once, leaving its child in the group.
    const group = await asNobody(["sh", "-c", "sleep 1000 & echo $!"], {}, /^\d+$/);
    const member = Number(group.line);
    foreignOrphans.push(member);
    await waitUntil(() => !isProcessAlive(group.pid), "the group's leader is gone");
    expect(isProcessAlive(member)).toBe(true);
    const state = await readState(statePath);
    state.agents.a = {
      desired: "running",
      port: basePort + 12,
      pid: group.pid,
      startTimeTicks: 1,
      startTimeMs: Date.now(),
    };
    await writeFile(statePath, JSON.stringify(state));

    const second = await start(args);
    for await (const event of second.client.watchHealth({ names: ["a"] })) {
      if (event.agent?.pid) pids.add(event.agent.pid);
      if (event.agent?.state === AgentState.RUNNING) break;
    }
    await stopNow(second);
    expect(isProcessAlive(member)).toBe(true);
  });
  it("keeps an agent recorded as stopped stopped, stopping what of it still runs", async () => {
    const { args, statePath } = await setup(["a"]);
    const first = await start(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    await stopNow(first, "SIGKILL");
    // Undeployed by the record (a Deploy whose spawn was never recorded, or an edited file):
    // what is found running must not bring it back.
    const state = JSON.parse(await readFile(statePath, "utf8"));
    state.agents.a = { desired: "stopped", port: 0, pid: 0 };
    await writeFile(statePath, JSON.stringify(state));

    const second = await start(args);
    // Listening is announced after the restore, which stopped the process first.
    expect(isGroupAlive(a?.pid ?? 0)).toBe(false);
    expect((await second.client.getStatus({ name: "a" })).agent).toMatchObject({
      state: AgentState.DISCOVERED,
      pid: 0,
    });
    expect(second.stderr()).toContain("stopping the processes of an agent recorded as stopped");
    expect(JSON.parse(await readFile(statePath, "utf8")).agents.a.desired).toBe("stopped");
  });

  it("keeps the secret in a state file only its owner reads, and it and the tokens out of logs and status", async () => {
    const { args, statePath } = await setup(["a"]);
    const daemon = await start(args);
    const a = (await daemon.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    const { secret } = await readState(statePath);
    expect(secret).toMatch(/^[A-Za-z0-9_-]{32,}$/);
    expect(statSync(statePath).mode & 0o077).toBe(0);
    const environ = readFileSync(`/proc/${a?.pid}/environ`, "utf8").split("\0");
    const token = environ.find((e) => e.startsWith("ATOLL_SUPERVISOR_TOKEN="))?.split("=")[1];
    expect(token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    // The agent's environment carries no path to the state dir any more.
    expect(environ.some((e) => e.startsWith("ATOLL_SUPERVISOR_STATE_DIR="))).toBe(false);
    const listed = JSON.stringify((await daemon.client.listAgents({})).agents, (_, v) =>
      typeof v === "bigint" ? String(v) : v,
    );
    const agentStatus = await (await fetch(`http://127.0.0.1:${a?.port}/status`)).text();
    await daemon.client.restart({ name: "a" }).then((r) => pids.add(r.agent?.pid ?? 0));
    await stopNow(daemon);
    for (const text of [daemon.stderr(), listed, agentStatus]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(token);
    }
  });
});
