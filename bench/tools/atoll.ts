/**
 * atoll-deploy, the product under test: the real daemon (`bin/atoll-deploy.js serve`, which runs
 * the compiled build in dist/ as an installed package does; `npm run bench` builds it first) as
 * a child of the harness, with generated agent definitions in a temp agents directory, driven
 * over gRPC with the project's typed client. Deploy/Undeploy per agent (all in parallel),
 * GetStatus and ListAgents for status.
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { credentials } from "@grpc/grpc-js";
import { AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { createClient, type ServiceClient } from "../../src/rpc/grpc-client.ts";
import { type AgentSpec, FIXTURE, fixtureEnv, NODE, REPO_ROOT } from "../lib/fixture.ts";
import { findProcessesWithEnv, isAlive, rotatedFiles } from "../lib/procfs.ts";
import { delay, nowMs, withTimeout } from "../lib/timing.ts";
import {
  agentNamed,
  type Crash,
  killPid,
  type ReportedState,
  type StatusCall,
  type Tool,
  waitHealthyByPort,
} from "./tool.ts";

export type AtollClient = ServiceClient<typeof DeploymentService>;

/** `[deployment]` settings of every bench definition besides command, port and env. */
export const ATOLL_DEPLOYMENT_SETTINGS = {
  restart_delay: 0.001,
  stable_after: 1,
  stop_timeout: 2,
} as const;

const ATOLL_BIN = path.join(REPO_ROOT, "bin", "atoll-deploy.js");
/** What the bin runs: a bench of stale or missing compiled code would measure the wrong thing. */
const ATOLL_BUILD = path.join(REPO_ROOT, "dist", "src", "cli", "main.js");
/** Node flags the daemon runs with: those of `npm start` and of the bin's shebang. */
export const DAEMON_NODE_FLAGS = ["--max-semi-space-size=2", "--heap-growing-percent=50"] as const;

/** Name of an AgentState / HealthStatus value ("RUNNING"), for reports. */
export function stateName(value: number): string {
  return Object.entries(AgentState).find(([, v]) => v === value)?.[0] ?? String(value);
}
export function healthName(value: number): string {
  return Object.entries(HealthStatus).find(([, v]) => v === value)?.[0] ?? String(value);
}

function tomlString(value: string): string {
  return JSON.stringify(value); // a JSON string is a valid TOML basic string
}

/** agent.toml for `spec`, with the settings of the bench plus `extra` `[deployment]` lines. */
export function agentToml(
  spec: AgentSpec,
  runMarker: string,
  extra: Readonly<Record<string, number | boolean | string>> = {},
): string {
  const deployment: Record<string, number | boolean | string> = {
    ...ATOLL_DEPLOYMENT_SETTINGS,
    ...(spec.logs !== undefined && { log_max_bytes: spec.logs.maxBytes, log_keep: spec.logs.keep }),
    ...extra,
  };
  const env = Object.entries(fixtureEnv(spec, runMarker))
    .map(([k, v]) => `${k} = ${tomlString(v)}`)
    .join(", ");
  return [
    "[agent]",
    `name = ${tomlString(spec.name)}`,
    "",
    "[deployment]",
    `command = [${[NODE, spec.script ?? FIXTURE, "--port", "{port}"].map(tomlString).join(", ")}]`,
    `port = ${spec.port}`,
    ...Object.entries(deployment).map(
      ([k, v]) => `${k} = ${typeof v === "string" ? tomlString(v) : String(v)}`,
    ),
    `env = { ${env} }`,
    "",
  ].join("\n");
}

/** Writes one `<name>/agent.toml` per agent under `agentsDir`. */
export function writeDefinitions(
  agentsDir: string,
  agents: readonly AgentSpec[],
  runMarker: string,
  extra: (spec: AgentSpec) => Readonly<Record<string, number | boolean | string>> = () => ({}),
): void {
  for (const spec of agents) {
    mkdirSync(path.join(agentsDir, spec.name), { recursive: true });
    writeFileSync(
      path.join(agentsDir, spec.name, "agent.toml"),
      agentToml(spec, runMarker, extra(spec)),
    );
  }
}

export interface AtollDaemonOptions {
  readonly agentsDir: string;
  readonly stateDir: string;
  readonly basePort: number;
  readonly maxAgents: number;
  /** Default liveness probe period, seconds. */
  readonly healthCheckIntervalS?: number;
  /** Where the daemon's stderr (JSON log) goes; appended to across restarts. */
  readonly logPath: string;
  /** gRPC address to listen on; default `127.0.0.1:0` (any free port). */
  readonly listen?: string;
  /** HTTP listener (`http_listen`): `host:port` or `off` (the default here). */
  readonly httpListen?: string;
  readonly extraArgs?: readonly string[];
}

/** One run of `atoll-deploy serve`: spawned in its own process group, stopped by pid. */
export class AtollDaemon {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly address: Promise<string>;
  /** Base URL of the HTTP listener; never resolves while `httpListen` is off. */
  readonly httpUrl: Promise<string>;

  constructor(options: AtollDaemonOptions) {
    const args = [
      ...DAEMON_NODE_FLAGS,
      ATOLL_BIN,
      "serve",
      "--agents-dir",
      options.agentsDir,
      "--state-dir",
      options.stateDir,
      "--listen",
      options.listen ?? "127.0.0.1:0",
      // Off unless a scenario wants it: the default port would clash between parallel runs.
      "--http-listen",
      options.httpListen ?? "off",
      "--host",
      "127.0.0.1",
      "--base-port",
      String(options.basePort),
      "--max-agents",
      String(options.maxAgents),
      "--health-check-interval",
      String(options.healthCheckIntervalS ?? 30),
      ...(options.extraArgs ?? []),
    ];
    const log = openSync(options.logPath, "a");
    try {
      this.child = spawn(NODE, args, {
        detached: true,
        stdio: ["ignore", "pipe", log],
        // No config file from $HOME: the flags above are the whole configuration.
        env: { ...process.env, HOME: options.stateDir, XDG_STATE_HOME: options.stateDir },
      });
    } finally {
      closeSync(log);
    }
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => resolve({ code, signal }));
      this.child.once("error", () => resolve({ code: null, signal: null }));
    });
    const stdout = this.child.stdout;
    if (stdout === null) throw new Error("atoll: no stdout pipe");
    const lines = createInterface({ input: stdout });
    this.httpUrl = new Promise((resolve) => {
      lines.on("line", (line) => {
        const match = /^atoll-deploy dashboard on (\S+?)\/?$/.exec(line);
        if (match?.[1] !== undefined) resolve(match[1]);
      });
    });
    this.address = new Promise((resolve, reject) => {
      lines.on("line", (line) => {
        const match = /^atoll-deploy listening on (\S+)/.exec(line);
        if (match?.[1] !== undefined) resolve(match[1]);
      });
      void this.exited.then(({ code, signal }) => {
        reject(
          new Error(
            `atoll-deploy serve exited (${code ?? signal}) before listening:\n${tail(options.logPath)}`,
          ),
        );
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM (the daemon stops its agents and exits), SIGKILL after `graceMs`. */
  async stop(graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) process.kill(this.pid, "SIGTERM");
    const result = await Promise.race([this.exited, delay(graceMs).then(() => undefined)]);
    if (result !== undefined) return result;
    this.kill();
    return this.exited;
  }

  /** SIGKILL to the daemon alone: its agents live on in their own process groups. */
  kill(): void {
    try {
      process.kill(this.pid, "SIGKILL");
    } catch {
      // Gone already.
    }
  }
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** A typed client of the daemon at `address`; separate channels get separate connections. */
export function atollClient(address: string, ownConnection = false): AtollClient {
  return createClient(
    DeploymentService,
    address,
    credentials.createInsecure(),
    ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {},
  );
}

export class AtollTool implements Tool {
  readonly name = "atoll" as const;
  readonly #runMarker: string;
  #dir: string | undefined;
  #agents: readonly AgentSpec[] = [];
  #daemon: AtollDaemon | undefined;
  #client: AtollClient | undefined;
  #address = "";

  constructor(runMarker: string) {
    this.#runMarker = runMarker;
  }

  async unavailable(): Promise<string | undefined> {
    if (!existsSync(ATOLL_BUILD)) return `${ATOLL_BUILD} is missing: run \`npm run build\``;
    const dir = mkdtempSync(path.join(os.tmpdir(), "bench-atoll-check-"));
    try {
      const daemon = new AtollDaemon({
        agentsDir: dir,
        stateDir: dir,
        basePort: 40_000,
        maxAgents: 1,
        logPath: path.join(dir, "daemon.log"),
      });
      try {
        await withTimeout("atoll-deploy serve to listen", daemon.address, 20_000);
      } finally {
        await daemon.stop(10_000);
      }
      return undefined;
    } catch (error) {
      return `atoll-deploy serve does not start: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async version(): Promise<string> {
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as {
      version: string;
    };
    return pkg.version;
  }

  describeConfig(): string {
    const settings = Object.entries(ATOLL_DEPLOYMENT_SETTINGS)
      .map(([k, v]) => `${k} = ${v}`)
      .join(", ");
    return `one agent.toml per agent: \`command = [node, fault-agent.mjs, "--port", "{port}"]\`, \`port = P\` (fixed, like the peers), ${settings}, other keys at their defaults (max_restarts 3, health_check_interval 30); daemon \`atoll-deploy serve --listen 127.0.0.1:0 --host 127.0.0.1 --max-agents N\`, driven over gRPC (Deploy/Undeploy per agent, all in parallel)`;
  }

  get client(): AtollClient {
    if (this.#client === undefined) throw new Error("atoll: setup() first");
    return this.#client;
  }

  get address(): string {
    return this.#address;
  }

  async setup(agents: readonly AgentSpec[]): Promise<void> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bench-atoll-"));
    this.#dir = dir;
    this.#agents = agents;
    const agentsDir = path.join(dir, "agents");
    writeDefinitions(agentsDir, agents, this.#runMarker);
    const basePort = Math.min(...agents.map((a) => a.port), 40_000);
    this.#daemon = new AtollDaemon({
      agentsDir,
      stateDir: path.join(dir, "state"),
      basePort,
      maxAgents: Math.max(10, agents.length),
      logPath: path.join(dir, "daemon.log"),
    });
    this.#address = await withTimeout("atoll-deploy serve to listen", this.#daemon.address, 30_000);
    this.#client = atollClient(this.#address);
    // Discovery runs before the listen line, but wait until every definition is listed anyway.
    const deadline = nowMs() + 10_000;
    for (;;) {
      const listed = await this.client.listAgents({});
      if (listed.agents.length >= agents.length) break;
      if (nowMs() > deadline)
        throw new Error(
          `atoll: only ${listed.agents.length} of ${agents.length} agents discovered`,
        );
      await delay(50);
    }
  }

  async startAll(names?: readonly string[]): Promise<void> {
    const chosen = names ?? this.#agents.map((a) => a.name);
    const results = await Promise.allSettled(chosen.map((name) => this.client.deploy({ name })));
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length > 0) {
      throw new Error(
        `atoll: ${failed.length} of ${chosen.length} Deploy calls failed, first: ${String((failed[0] as PromiseRejectedResult).reason)}`,
      );
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
    return (await this.client.getStatus({ name })).agent?.pid ?? 0;
  }

  async crash(name: string): Promise<Crash> {
    agentNamed(this.#agents, name);
    return killPid(await this.pid(name));
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.#agents.map((a) => this.client.undeploy({ name: a.name })));
  }

  readonly listCall: StatusCall = {
    label: "ListAgents",
    run: () => this.client.listAgents({}),
  };

  oneCall(name: string): StatusCall {
    return { label: "GetStatus", run: () => this.client.getStatus({ name }) };
  }

  async reportedState(name: string): Promise<ReportedState> {
    const agent = (await this.client.getStatus({ name })).agent;
    return {
      state:
        agent === undefined
          ? "unknown"
          : `${stateName(agent.state)}${agent.stateReason ? ` (${agent.stateReason})` : ""}`,
      pid: agent?.pid ?? 0,
      restarts: agent?.restartCount ?? 0,
    };
  }

  daemonPid(): number | undefined {
    return this.#daemon?.running === true ? this.#daemon.pid : undefined;
  }

  /** The output keeper of this run's state dir (it reads the agents' FIFOs and writes their logs). */
  helperPids(): number[] {
    if (this.#dir === undefined) return [];
    return findProcessesWithEnv("ATOLL_OUTPUT_KEEPER_STATE_DIR", path.join(this.#dir, "state"));
  }

  agentLogFiles(name: string): string[] {
    if (this.#dir === undefined) return [];
    return rotatedFiles(path.join(this.#dir, "state", "logs"), `${name}.log`);
  }

  async teardown(): Promise<void> {
    this.#client?.close();
    this.#client = undefined;
    const daemon = this.#daemon;
    if (daemon !== undefined) {
      await daemon.stop(60_000);
      // Should be none: agents are stopped by the daemon's shutdown.
      const deadline = nowMs() + 5_000;
      while (isAlive(daemon.pid) && nowMs() < deadline) await delay(25);
    }
    this.#daemon = undefined;
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = undefined;
  }
}
