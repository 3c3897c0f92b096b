/**
 * A real supervisor on real processes for tests: a temp agents directory of
 * fault-agent definitions, a registry bound to the real platform, event-driven
 * waits on its event stream, and a teardown that proves no process was left.
 */
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { discoverAgents } from "../../src/config/discovery.ts";
import type { AgentStatus } from "../../src/core/agent-status.ts";
import { systemClock } from "../../src/core/clock.ts";
import { createJsonLogger, type Logger } from "../../src/core/logger.ts";
import { Cgroups, type CgroupVersion } from "../../src/platform/cgroups.ts";
import { OutputKeeper } from "../../src/platform/output-keeper.ts";
import { PortAllocator } from "../../src/platform/port-allocator.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { AgentOwnership, newSecret } from "../../src/supervisor/agent-ownership.ts";
import { AgentRegistry } from "../../src/supervisor/agent-registry.ts";
import { SlotPool } from "../../src/supervisor/agent-slots.ts";
import { createRunnerPlatform } from "../../src/supervisor/platform-binding.ts";
import type { RunnerPlatform } from "../../src/supervisor/runner-deps.ts";

export const FAULT_AGENT = fileURLToPath(new URL("../fixtures/fault-agent.mjs", import.meta.url));

const silent: Logger = createJsonLogger({ sink: { write: () => true }, level: "error" });

/** TOML for a fault-agent definition with fast timings; `extra` adds [deployment] lines. */
export function markFileEnv(name: string): Record<string, string> {
  return { MARK_FILE: `@DIR@/${name}.marks` };
}

export function faultAgentToml(
  name: string,
  options: {
    env?: Record<string, string>;
    /** `[deployment]` keys overriding the fast test defaults (values as TOML literals). */
    deployment?: Record<string, string | number>;
    resources?: string;
  } = {},
): string {
  const env = Object.entries(options.env ?? {})
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
    .join("\n");
  const deployment: Record<string, string | number> = {
    command: `[${JSON.stringify(process.execPath)}, ${JSON.stringify(FAULT_AGENT)}]`,
    restart_delay: 0.05,
    health_check_interval: 0.2,
    health_timeout: 1,
    failure_threshold: 2,
    start_timeout: 10,
    stop_timeout: 2,
    ...options.deployment,
  };
  const lines = Object.entries(deployment).map(([k, v]) => `${k} = ${v}`);
  return `[agent]
name = "${name}"
version = "1.0.0"

[deployment]
${lines.join("\n")}

[deployment.env]
${env}

[resources]
${options.resources ?? ""}
`;
}

export interface HarnessOptions {
  maxAgents?: number;
  maxRestarts?: number;
  /** How many ports the range holds (default 31). */
  ports?: number;
  /** Where the registry logs (default: nowhere). */
  logger?: Logger;
  /** The OS facilities (default: the real ones). */
  platform?: RunnerPlatform;
  /**
   * cgroup versions to contain agents in, in order, as a daemon would (default `[2, 1]`: the
   * first writable one); `[]`: none, the trees are found through /proc by the agents' tokens.
   */
  cgroupVersions?: readonly CgroupVersion[];
}

export interface Harness {
  readonly registry: AgentRegistry;
  readonly dir: string;
  readonly agentsDir: string;
  readonly basePort: number;
  /** The output keeper every registry of the harness spawns through (started by the first spawn). */
  readonly keeper: OutputKeeper;
  /** The state dir's ownership (its secret's tokens), shared by every registry of the harness. */
  readonly ownership: AgentOwnership;
  /** The agents' cgroups (undefined without one); removed, and checked gone, at close. */
  readonly cgroups: Cgroups | undefined;
  /**
   * Another registry on the same agents directory and port range, as a daemon started after this
   * one would build (fresh leases and slots); closed with the harness.
   */
  newRegistry(): Promise<AgentRegistry>;
  /** Resolves with the agent's status once `predicate` holds (checked on every change). */
  waitFor(
    name: string,
    predicate: (s: AgentStatus) => boolean,
    timeoutMs?: number,
  ): Promise<AgentStatus>;
  /** Lines of the agent's MARK_FILE (one per process start). */
  starts(name: string): Promise<string[]>;
  markFile(name: string): string;
  close(): Promise<void>;
}

/** Resolves with the agent's status once `predicate` holds (checked on every change of `registry`). */
export function waitForStatus(
  registry: AgentRegistry,
  name: string,
  predicate: (s: AgentStatus) => boolean,
  timeoutMs = 20_000,
): Promise<AgentStatus> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const status = registry.has(name) ? registry.status(name) : undefined;
      if (status && predicate(status)) {
        resolve(status);
        return true;
      }
      return false;
    };
    if (check()) return;
    const timer = setTimeout(() => {
      unsubscribe();
      const status = registry.has(name) ? registry.status(name) : undefined;
      reject(new Error(`timed out waiting for ${name}; last status ${JSON.stringify(status)}`));
    }, timeoutMs);
    const unsubscribe = registry.events.subscribe((change) => {
      if (change.name === name && check()) {
        clearTimeout(timer);
        unsubscribe();
      }
    });
  });
}

// Below the kernel's ephemeral range (32768+ here): a client socket's local port there makes a
// port busy at random, and these tests expect exact leases. Test files use disjoint ranges.
let nextBase = 10_000 + (process.pid % 50) * 100;

/** Builds a registry over `agents` (name → agent.toml text) with its own port range. */
export async function createHarness(
  agents: Record<string, string>,
  options: HarnessOptions = {},
): Promise<Harness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-sup-"));
  const agentsDir = path.join(dir, "agents");
  for (const [name, toml] of Object.entries(agents)) {
    await mkdir(path.join(agentsDir, name), { recursive: true });
    // "@DIR@" in a definition stands for this harness's temp directory (MARK_FILE paths).
    await writeFile(path.join(agentsDir, name, "agent.toml"), toml.replaceAll("@DIR@", dir));
  }
  await mkdir(agentsDir, { recursive: true });
  const basePort = nextBase;
  nextBase += 37;
  const seenPids = new Set<number>();
  const registries: AgentRegistry[] = [];
  // A real keeper, shared like a state dir's by successive daemons; started at the first spawn
  // (tests that never spawn do not pay for it).
  const keeper = new OutputKeeper({ stateDir: path.join(dir, "state"), logger: silent });
  // As a daemon's: a secret of its own, and the first cgroup hierarchy that can be written.
  const ownership = new AgentOwnership(newSecret());
  const cgroups = Cgroups.open({
    baseName: ownership.cgroupBaseName,
    ...(options.cgroupVersions !== undefined && { versions: options.cgroupVersions }),
  });
  const build = async (): Promise<AgentRegistry> => {
    const built = new AgentRegistry(
      {
        clock: systemClock,
        platform: options.platform ?? createRunnerPlatform({ output: keeper, cgroups, ownership }),
        ports: new PortAllocator({
          host: "127.0.0.1",
          basePort,
          maxPort: basePort + (options.ports ?? 31) - 1,
        }),
        slots: new SlotPool(options.maxAgents ?? 10),
        defaults: {
          autoRestart: true,
          maxRestarts: options.maxRestarts ?? 3,
          healthCheckIntervalMs: 200,
          logMaxBytes: 1024 * 1024,
          logKeep: 2,
        },
        host: "127.0.0.1",
        logDir: path.join(dir, "logs"),
        resolveCommand: (argv0) => [argv0],
        baseEnv: { PATH: process.env.PATH },
        ownership,
        logger: options.logger ?? silent,
      },
      () => undefined,
    );
    built.applyDiscovery((await discoverAgents(agentsDir)).agents);
    built.events.subscribe((change) => {
      if (change.status.pid > 0) seenPids.add(change.status.pid);
    });
    registries.push(built);
    return built;
  };
  const registry = await build();

  const markFile = (name: string): string => path.join(dir, `${name}.marks`);
  return {
    registry,
    dir,
    agentsDir,
    basePort,
    keeper,
    ownership,
    cgroups,
    newRegistry: build,
    markFile,
    waitFor: (name, predicate, timeoutMs) => waitForStatus(registry, name, predicate, timeoutMs),
    async starts(name) {
      const text = await readFile(markFile(name), "utf8").catch(() => "");
      return text.split("\n").filter((l) => l.trim() !== "");
    },
    async close() {
      for (const built of registries.reverse()) await built.shutdown();
      await keeper.stop();
      const left = [...seenPids].filter((pid) => isGroupAlive(pid));
      for (const pid of left) process.kill(-pid, "SIGKILL");
      // Every cgroup the agents had is removed once their trees are gone; the base goes last.
      const inCgroups = cgroups?.list().flatMap((c) => c.pids()) ?? [];
      for (const cgroup of cgroups?.list() ?? []) cgroup.kill();
      for (let i = 0; i < 500 && cgroups?.list().some((c) => c.populated()); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const cgroupLeft = cgroups !== undefined && !cgroups.close() && existsSync(cgroups.base);
      await rm(dir, { recursive: true, force: true });
      if (left.length > 0) throw new Error(`process groups left behind: ${left.join(", ")}`);
      if (inCgroups.length > 0)
        throw new Error(`processes left in cgroups: ${inCgroups.join(", ")}`);
      if (cgroupLeft) throw new Error(`cgroups left behind under ${cgroups?.base}`);
    },
  };
}
