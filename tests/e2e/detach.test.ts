/**
 * Leaving agents running for the next daemon (docs/operations.md): SIGUSR2 detaches on purpose
 * (upgrades); an error nothing caught detaches too, so a daemon bug never takes the fleet down.
 * Either way state.json is saved, the agents keep serving and the next `serve` adopts them.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { KEEPER_ENV } from "../../src/platform/keeper/protocol.ts";
import { findGroupLeadersWithEnv } from "../../src/platform/proc-info.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { type Daemon, startDaemon, workspace } from "./daemon.ts";

const daemons: Daemon[] = [];
const pids = new Set<number>();
const cleanups: (() => Promise<void>)[] = [];
const stateDirs = new Set<string>();

/** The output keeper processes serving `stateDir`. */
function keepers(stateDir: string): number[] {
  return findGroupLeadersWithEnv(KEEPER_ENV, stateDir).map((leader) => leader.stat.pid);
}

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop("SIGTERM");
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  const leftKeepers = [...stateDirs].flatMap(keepers);
  for (const pid of leftKeepers) process.kill(-pid, "SIGKILL");
  stateDirs.clear();
  for (const c of cleanups.splice(0)) await c();
  expect(left).toEqual([]);
  expect(leftKeepers).toEqual([]);
});

// A port range of this test file, away from the other files' ranges (they run in parallel).
const basePort = 20_000 + (process.pid % 40) * 25;

async function setup() {
  const ws = await workspace({ a: { file: "agent.toml", text: faultAgentToml("a") } });
  cleanups.push(ws.cleanup);
  stateDirs.add(ws.stateDir);
  const args = [
    "--agents-dir",
    ws.agentsDir,
    "--state-dir",
    ws.stateDir,
    "--base-port",
    String(basePort),
  ];
  return { ws, args };
}

async function statusCode(port: number): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}/status`)).status;
}

describe("detaching from the agents", () => {
  it("exits 0 on SIGUSR2 leaving agents serving, and the next serve adopts them", async () => {
    const { ws, args } = await setup();
    const first = await startDaemon(args);
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    const keeper = keepers(ws.stateDir);
    expect(keeper).toHaveLength(1);
    expect(await first.stop("SIGUSR2")).toBe(0);
    expect(first.stderr()).toContain("detaching");
    expect(isGroupAlive(a?.pid ?? 0)).toBe(true);
    expect(await statusCode(a?.port ?? 0)).toBe(200);
    // The output keeper stays too, still reading the agent's output.
    expect(keepers(ws.stateDir)).toEqual(keeper);

    const second = await startDaemon(args);
    daemons.push(second);
    expect((await second.client.getStatus({ name: "a" })).agent).toMatchObject({
      state: AgentState.RUNNING,
      stateReason: "ADOPTED",
      pid: a?.pid,
      port: a?.port,
    });
    expect(keepers(ws.stateDir)).toEqual(keeper); // reconnected to, not replaced
  });

  it("detaches, logging the error, when an error reaches the top unhandled", async () => {
    const { ws, args } = await setup();
    // Injected into the daemon only through Node's --import: a SIGWINCH then rejects a promise
    // nobody handles, as a bug in any callback would.
    const fault = path.join(ws.dir, "inject-fault.mjs");
    await writeFile(
      fault,
      'process.on("SIGWINCH", () => { Promise.reject(new Error("injected fault")); });\n',
    );
    const first = await startDaemon(args, {
      NODE_OPTIONS: `--import=${pathToFileURL(fault).href}`,
    });
    const a = (await first.client.deploy({ name: "a" })).agent;
    pids.add(a?.pid ?? 0);
    expect(await first.stop("SIGWINCH")).toBe(1);
    expect(first.stderr()).toMatch(/unhandledRejection.*injected fault/);
    expect(isGroupAlive(a?.pid ?? 0)).toBe(true);
    expect(await statusCode(a?.port ?? 0)).toBe(200);

    const second = await startDaemon(args);
    daemons.push(second);
    expect((await second.client.getStatus({ name: "a" })).agent).toMatchObject({
      state: AgentState.RUNNING,
      stateReason: "ADOPTED",
      pid: a?.pid,
    });
  });
});
