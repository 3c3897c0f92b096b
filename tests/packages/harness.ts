/**
 * A real package store on a real supervisor for tests: a temp agents directory and state
 * directory, an AgentRegistry on the real platform, the AgentCatalog merging both directories,
 * and a PackageStore with test-sized limits. `tree()` lists everything under
 * `<state_dir>/packages` (hidden entries too), so a test can prove a refused install left nothing.
 */
import { lstat, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { discoverAgents } from "../../src/config/discovery.ts";
import type { PackageUploadHeader } from "../../src/core/agent-backend.ts";
import type { AgentStatus } from "../../src/core/agent-status.ts";
import { systemClock } from "../../src/core/clock.ts";
import { createJsonLogger, type Logger } from "../../src/core/logger.ts";
import { AgentCatalog } from "../../src/packages/agent-catalog.ts";
import { PackageLayout } from "../../src/packages/package-layout.ts";
import { PackageStore, type PackageStoreOptions } from "../../src/packages/package-store.ts";
import { agentLogPath } from "../../src/platform/log-file.ts";
import { OutputKeeper } from "../../src/platform/output-keeper.ts";
import { PortAllocator } from "../../src/platform/port-allocator.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { AgentRegistry } from "../../src/supervisor/agent-registry.ts";
import { SlotPool } from "../../src/supervisor/agent-slots.ts";
import { createRunnerPlatform } from "../../src/supervisor/platform-binding.ts";
import { sha256 } from "./archives.ts";

export const FAULT_AGENT = fileURLToPath(new URL("../fixtures/fault-agent.mjs", import.meta.url));

/** The fault-agent fixture as a package's command. */
export const FAULT_COMMAND: readonly string[] = [process.execPath, FAULT_AGENT];

const silent: Logger = createJsonLogger({ sink: { write: () => true }, level: "error" });

// Ports below the ephemeral range, apart from the supervisor tests' ranges.
let nextBase = 15_000 + (process.pid % 40) * 100;

export interface PackageHarness {
  readonly dir: string;
  readonly stateDir: string;
  readonly agentsDir: string;
  readonly registry: AgentRegistry;
  readonly catalog: AgentCatalog;
  readonly store: PackageStore;
  readonly layout: PackageLayout;
  /** Installs `archive` (sent in chunks of `chunkBytes`) with its right checksum unless given. */
  install(
    archive: Buffer,
    header?: Partial<PackageUploadHeader>,
    options?: { signal?: AbortSignal; chunkBytes?: number },
  ): ReturnType<PackageStore["install"]>;
  /** Every path under `<state_dir>/packages`, sorted ("dir/" for directories, "-> target" for links). */
  tree(): Promise<string[]>;
  /** Resolves once `predicate` holds for the agent's status (checked on every change). */
  waitFor(
    name: string,
    predicate: (s: AgentStatus) => boolean,
    timeoutMs?: number,
  ): Promise<AgentStatus>;
  /** A second store and catalog on the same directories (a daemon restart). */
  reopen(): Promise<{ registry: AgentRegistry; catalog: AgentCatalog; store: PackageStore }>;
  close(): Promise<void>;
}

async function listTree(root: string, prefix = ""): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(path.join(root, prefix));
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of names.sort()) {
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    const info = await lstat(path.join(root, rel));
    if (info.isSymbolicLink()) out.push(`${rel} ->`);
    else if (info.isDirectory()) out.push(`${rel}/`, ...(await listTree(root, rel)));
    else out.push(rel);
  }
  return out;
}

export async function createPackageHarness(
  options: {
    agents?: Record<string, string>;
    store?: Partial<Omit<PackageStoreOptions, "host" | "stateDir" | "logDir">>;
  } = {},
): Promise<PackageHarness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-pkg-"));
  const agentsDir = path.join(dir, "agents");
  const stateDir = path.join(dir, "state");
  const logDir = path.join(stateDir, "logs");
  await mkdir(agentsDir, { recursive: true });
  for (const [name, toml] of Object.entries(options.agents ?? {})) {
    await mkdir(path.join(agentsDir, name), { recursive: true });
    await writeFile(path.join(agentsDir, name, "agent.toml"), toml);
  }
  const basePort = nextBase;
  nextBase += 31;
  const seenPids = new Set<number>();
  const closers: (() => Promise<void>)[] = [];
  // The state dir's output keeper, as the daemon has it (started at the first spawn or install).
  const keeper = new OutputKeeper({ stateDir, logger: silent });

  const build = async () => {
    const registry = new AgentRegistry(
      {
        clock: systemClock,
        platform: createRunnerPlatform({ output: keeper }),
        ports: new PortAllocator({ host: "127.0.0.1", basePort, maxPort: basePort + 30 }),
        slots: new SlotPool(10),
        defaults: {
          autoRestart: true,
          maxRestarts: 3,
          healthCheckIntervalMs: 200,
          logMaxBytes: 1024 * 1024,
          logKeep: 2,
        },
        host: "127.0.0.1",
        logDir,
        resolveCommand: (argv0) => [argv0],
        baseEnv: { PATH: process.env.PATH },
        logger: silent,
      },
      () => undefined,
    );
    registry.events.subscribe((change) => {
      if (change.status.pid > 0) seenPids.add(change.status.pid);
    });
    const layout = new PackageLayout(stateDir);
    const catalog = new AgentCatalog({
      layout,
      apply: (agents) => registry.applyDiscovery(agents),
      basePath: process.env.PATH,
    });
    catalog.setDirectory(await discoverAgents(agentsDir));
    const store = new PackageStore({
      stateDir,
      logDir,
      // As serve.ts: provisioning output goes through the keeper into the agent's log.
      provisioningOutput: (name) =>
        keeper.prepare({ name, log: agentLogPath(logDir, name), maxBytes: 1024 * 1024, keep: 2 }),
      maxPackageBytes: 4 * 1024 * 1024,
      host: {
        backend: registry,
        directoryAgent: (name) => catalog.directoryAgent(name),
        refreshPackages: () => catalog.refreshPackages(),
      },
      env: process.env,
      clock: systemClock,
      logger: silent,
      ...options.store,
    });
    await store.open();
    await catalog.refreshPackages();
    closers.push(async () => {
      store.close();
      await registry.shutdown();
    });
    return { registry, catalog, store, layout };
  };

  const first = await build();
  const waitFor = (
    registry: AgentRegistry,
    name: string,
    predicate: (s: AgentStatus) => boolean,
    timeoutMs = 20_000,
  ): Promise<AgentStatus> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const status = registry.has(name) ? registry.status(name) : undefined;
        if (status !== undefined && predicate(status)) {
          resolve(status);
          return true;
        }
        return false;
      };
      if (check()) return;
      const timer = setTimeout(() => {
        unsubscribe();
        reject(new Error(`timed out waiting for ${name}`));
      }, timeoutMs);
      const unsubscribe = registry.events.subscribe((change) => {
        if (change.name === name && check()) {
          clearTimeout(timer);
          unsubscribe();
        }
      });
    });

  return {
    dir,
    stateDir,
    agentsDir,
    ...first,
    install(archive, header = {}, callOptions = {}) {
      const chunkBytes = callOptions.chunkBytes ?? 64 * 1024;
      async function* chunks() {
        for (let at = 0; at < archive.length; at += chunkBytes) {
          yield archive.subarray(at, at + chunkBytes);
        }
      }
      return first.store.install(
        {
          sha256: sha256(archive),
          force: false,
          start: false,
          format: undefined,
          sizeBytes: archive.length,
          ...header,
        },
        chunks(),
        callOptions.signal ?? new AbortController().signal,
      );
    },
    tree: () => listTree(path.join(stateDir, "packages")),
    waitFor: (name, predicate, timeoutMs) => waitFor(first.registry, name, predicate, timeoutMs),
    reopen: build,
    async close() {
      for (const close of closers.splice(0).reverse()) await close();
      await keeper.stop();
      const left = [...seenPids].filter((pid) => isGroupAlive(pid));
      for (const pid of left) process.kill(-pid, "SIGKILL");
      await rm(dir, { recursive: true, force: true });
      if (left.length > 0) throw new Error(`process groups left behind: ${left.join(", ")}`);
    },
  };
}

/** The tree of an empty packages directory after `open()`. */
export const EMPTY_TREE: readonly string[] = [".staging/", ".store/"];
