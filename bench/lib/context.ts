/**
 * What every scenario shares: the run marker, the port range, quick or full counts, the rows
 * collected so far, and `withTool`, which wraps one tool's use in setup → work → teardown and
 * then checks that nothing the harness started is left behind.
 */
import type { Tool } from "../tools/tool.ts";
import type { AgentSpec } from "./fixture.ts";
import { busyPorts } from "./ports.ts";
import { findMarkedProcesses, killHard } from "./procfs.ts";
import type { Cell, Row } from "./results.ts";
import { delay, nowMs } from "./timing.ts";

export class BenchContext {
  readonly runMarker: string;
  readonly basePort: number;
  readonly quick: boolean;
  readonly rows: Row[] = [];
  readonly violations: string[] = [];
  /** Tools between setup and teardown, for the signal handler's cleanup. */
  readonly active = new Set<Tool>();

  constructor(init: { runMarker: string; basePort: number; quick: boolean }) {
    this.runMarker = init.runMarker;
    this.basePort = init.basePort;
    this.quick = init.quick;
  }

  log(message: string): void {
    process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
  }

  /** Full or quick value. */
  pick<T>(full: T, quick: T): T {
    return this.quick ? quick : full;
  }

  /**
   * setup(agents) → `work` → teardown, always; then a /proc scan for processes with this run's
   * marker (leaks are recorded as violations and killed by pid).
   */
  async withTool<T>(tool: Tool, agents: readonly AgentSpec[], work: () => Promise<T>): Promise<T> {
    const ports = agents.map((a) => a.port);
    const deadline = nowMs() + 15_000;
    let busy = await busyPorts(ports);
    while (busy.length > 0 && nowMs() < deadline) {
      await delay(250);
      busy = await busyPorts(ports);
    }
    if (busy.length > 0) {
      throw new Error(
        `ports already in use by another process: ${busy.slice(0, 5).join(", ")} (choose another --base-port)`,
      );
    }
    this.active.add(tool);
    try {
      await tool.setup(agents);
      return await work();
    } finally {
      try {
        await tool.teardown();
      } finally {
        this.active.delete(tool);
        this.checkLeaks(tool.name, this.markerOf(tool.name));
      }
    }
  }

  /** The marker in the environment of every agent `tool` starts. */
  markerOf(tool: string): string {
    return `${this.runMarker}.${tool}`;
  }

  /** Records and kills any process with `marker` (default: of the whole run) still alive. */
  checkLeaks(after: string, marker = this.runMarker): void {
    const leaked = findMarkedProcesses(marker);
    if (leaked.length === 0) return;
    this.violations.push(
      `${after}: ${leaked.length} agent process(es) left after teardown: ${leaked
        .slice(0, 3)
        .map((p) => `${p.pid} (${p.cmd.slice(-60)})`)
        .join("; ")}`,
    );
    for (const p of leaked) killHard(p.pid, false);
  }

  /** Runs `measure` for one tool; an exception becomes an error cell and a log line. */
  async cell(tool: Tool, what: string, measure: () => Promise<Cell>): Promise<Cell> {
    try {
      return await measure();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.log(`  ${tool.name} ${what}: ERROR ${message.split("\n")[0]}`);
      return { error: message.split("\n")[0] ?? message };
    }
  }
}
