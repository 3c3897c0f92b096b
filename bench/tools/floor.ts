/**
 * The floor: the harness itself supervises the fixture agents with the least work possible.
 * Each agent is spawned directly (no shell) as the leader of its own process group with its
 * output appended to a log file, restarted the moment it exits (no delay, no budget), and stopped
 * with SIGTERM to the group and SIGKILL to the group after 2 s. Every other tool is compared
 * with this.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type AgentSpec, fixtureArgs, fixtureEnv, NODE } from "../lib/fixture.ts";
import { isAlive } from "../lib/procfs.ts";
import { delay, nowMs } from "../lib/timing.ts";
import {
  agentNamed,
  type Crash,
  killPid,
  type ReportedState,
  type StatusCall,
  type Tool,
  waitHealthyByPort,
} from "./tool.ts";

/** Grace between SIGTERM and SIGKILL, as the other tools are configured. */
export const FLOOR_STOP_TIMEOUT_MS = 2_000;

interface Slot {
  readonly spec: AgentSpec;
  child: ChildProcess | undefined;
  stopping: boolean;
  starts: number;
  exited: Promise<void>;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

export class FloorTool implements Tool {
  readonly name = "floor" as const;
  readonly #runMarker: string;
  #dir: string | undefined;
  #agents: readonly AgentSpec[] = [];
  readonly #slots = new Map<string, Slot>();

  constructor(runMarker: string) {
    this.#runMarker = runMarker;
  }

  async unavailable(): Promise<string | undefined> {
    return undefined;
  }

  async version(): Promise<string> {
    return `harness on node ${process.version}`;
  }

  describeConfig(): string {
    return "the harness spawns `node fault-agent.mjs --port P` itself (own process group, output to a log file), restarts it on exit at once, stops with SIGTERM to the group and SIGKILL after 2 s";
  }

  async setup(agents: readonly AgentSpec[]): Promise<void> {
    this.#dir = mkdtempSync(path.join(os.tmpdir(), "bench-floor-"));
    this.#agents = agents;
  }

  #spawn(slot: Slot): void {
    const dir = this.#dir;
    if (dir === undefined) throw new Error("floor: setup() first");
    const log = openSync(path.join(dir, `${slot.spec.name}.log`), "a");
    let child: ChildProcess;
    try {
      child = spawn(NODE, fixtureArgs(slot.spec), {
        detached: true,
        stdio: ["ignore", log, log],
        env: { ...process.env, ...fixtureEnv(slot.spec, this.#runMarker) },
      });
    } finally {
      closeSync(log);
    }
    slot.child = child;
    slot.starts += 1;
    slot.exited = new Promise((resolve) => {
      child.once("exit", () => {
        if (slot.child === child) slot.child = undefined;
        if (!slot.stopping) this.#spawn(slot);
        resolve();
      });
      child.once("error", () => resolve());
    });
  }

  async startAll(names?: readonly string[]): Promise<void> {
    for (const spec of this.#agents) {
      if (names !== undefined && !names.includes(spec.name)) continue;
      const slot: Slot = {
        spec,
        child: undefined,
        stopping: false,
        starts: 0,
        exited: Promise.resolve(),
      };
      this.#slots.set(spec.name, slot);
      this.#spawn(slot);
    }
  }

  waitAllHealthy(
    names?: readonly string[],
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<void> {
    return waitHealthyByPort(this.#agents, names, timeoutMs, signal);
  }

  async pid(name: string): Promise<number> {
    return this.#slots.get(name)?.child?.pid ?? 0;
  }

  async crash(name: string): Promise<Crash> {
    agentNamed(this.#agents, name);
    return killPid(await this.pid(name));
  }

  async #stop(slot: Slot): Promise<void> {
    slot.stopping = true;
    const child = slot.child;
    if (child?.pid === undefined) return;
    const pid = child.pid;
    signalGroup(pid, "SIGTERM");
    const timer = setTimeout(() => signalGroup(pid, "SIGKILL"), FLOOR_STOP_TIMEOUT_MS);
    await slot.exited;
    clearTimeout(timer);
    // Helpers left in the group (none for this fixture) would still hold resources: bounded wait.
    const deadline = nowMs() + FLOOR_STOP_TIMEOUT_MS;
    while (groupHasMembers(pid) && nowMs() < deadline) await delay(10);
    signalGroup(pid, "SIGKILL");
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#slots.values()].map((slot) => this.#stop(slot)));
  }

  readonly listCall: StatusCall = {
    label: "(in-process map)",
    run: async () => [...this.#slots.values()].map((s) => s.child?.pid),
  };

  oneCall(name: string): StatusCall {
    return { label: "(in-process map)", run: async () => this.#slots.get(name)?.child?.pid };
  }

  async reportedState(name: string): Promise<ReportedState> {
    const slot = this.#slots.get(name);
    const pid = slot?.child?.pid ?? 0;
    return {
      state: pid > 0 && isAlive(pid) ? "running" : "not running",
      pid,
      restarts: Math.max(0, (slot?.starts ?? 0) - 1),
    };
  }

  daemonPid(): number | undefined {
    return undefined;
  }

  async teardown(): Promise<void> {
    await this.stopAll();
    this.#slots.clear();
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = undefined;
  }
}

function groupHasMembers(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
