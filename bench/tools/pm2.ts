/**
 * PM2 (npm `pm2`, pinned in devDependencies) as a peer, driven through its programmatic API
 * (the same RPC the `pm2` CLI uses, without a Node start per command) with an ecosystem config.
 * The daemon runs with its own PM2_HOME in a temp dir and is ended with `killDaemon`.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import {
  type AgentSpec,
  FIXTURE,
  fixtureArgs,
  fixtureEnv,
  NODE,
  REPO_ROOT,
} from "../lib/fixture.ts";
import { rotatedFiles } from "../lib/procfs.ts";
import { withTimeout } from "../lib/timing.ts";
import { readPidFile, waitPidGone } from "./daemon-process.ts";
import {
  agentNamed,
  type Crash,
  killPid,
  type ReportedState,
  type StatusCall,
  type Tool,
  waitHealthyByPort,
} from "./tool.ts";

/** Settings of every app besides name/script/args/env, written out in the report. */
export const PM2_APP_SETTINGS = {
  exec_mode: "fork",
  instances: 1,
  autorestart: true,
  restart_delay: 0,
  kill_timeout: 2_000,
  max_restarts: 16,
  min_uptime: 1_000,
  watch: false,
} as const;

/** PM2 sends SIGINT to stop an app unless told otherwise; the daemon is told SIGTERM. */
export const PM2_DAEMON_ENV = { PM2_KILL_SIGNAL: "SIGTERM" } as const;

type Callback<T> = (error: unknown, result: T) => void;

interface Pm2ProcessDescription {
  readonly name?: string;
  readonly pid?: number;
  readonly pm2_env?: { readonly status?: string; readonly restart_time?: number };
}

/** The part of PM2's programmatic API used here (`new (require("pm2").custom)(opts)`). */
interface Pm2Api {
  connect(cb: Callback<unknown>): void;
  start(config: object, cb: Callback<unknown>): void;
  stop(target: string, cb: Callback<unknown>): void;
  list(cb: Callback<Pm2ProcessDescription[]>): void;
  describe(target: string, cb: Callback<Pm2ProcessDescription[]>): void;
  killDaemon(cb: Callback<unknown>): void;
  disconnect(cb?: () => void): void;
}

type Pm2Constructor = new (options: { pm2_home: string; daemon_mode: boolean }) => Pm2Api;

function call<T>(what: string, fn: (cb: Callback<T>) => void, timeoutMs = 180_000): Promise<T> {
  return withTimeout(
    `pm2 ${what}`,
    new Promise<T>((resolve, reject) => {
      fn((error, result) => {
        if (error !== null && error !== undefined) {
          reject(
            error instanceof Error ? error : new Error(`pm2 ${what}: ${JSON.stringify(error)}`),
          );
        } else resolve(result);
      });
    }),
    timeoutMs,
  );
}

const require = createRequire(import.meta.url);
const PM2_BIN = path.join(REPO_ROOT, "node_modules", ".bin", "pm2");

export class Pm2Tool implements Tool {
  readonly name = "pm2" as const;
  readonly #runMarker: string;
  /** One PM2_HOME per harness run: PM2 reads its paths from the environment once, at load. */
  #home: string | undefined;
  #api: Pm2Api | undefined;
  #agents: readonly AgentSpec[] = [];
  #daemonPid = 0;

  constructor(runMarker: string) {
    this.#runMarker = runMarker;
  }

  async unavailable(): Promise<string | undefined> {
    try {
      require.resolve("pm2");
      return undefined;
    } catch {
      return "npm package pm2 not installed (it is a devDependency: run npm ci)";
    }
  }

  async version(): Promise<string> {
    return (require("pm2/package.json") as { version: string }).version;
  }

  describeConfig(): string {
    const settings = Object.entries(PM2_APP_SETTINGS)
      .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
      .join(", ");
    return `ecosystem with one app per agent: \`script: fault-agent.mjs, args: ["--port", P], interpreter: node\`, ${settings}; daemon with PM2_KILL_SIGNAL=SIGTERM (PM2 stops with SIGINT by default, which the fixture always honours), own PM2_HOME in a temp dir; driven by the programmatic API (\`require("pm2").custom\`), status via \`list()\` (the data of \`pm2 jlist\`)`;
  }

  #ecosystem(agents: readonly AgentSpec[]): { apps: object[] } {
    return {
      apps: agents.map((agent) => ({
        name: agent.name,
        script: agent.script ?? FIXTURE,
        args: fixtureArgs(agent).slice(1),
        interpreter: NODE,
        cwd: path.dirname(FIXTURE),
        ...PM2_APP_SETTINGS,
        // PM2's own log settings: one file for stdout and one for stderr; PM2 itself has no size
        // limit (that is the pm2-logrotate module, which checks every 30 s by default).
        ...(agent.logs !== undefined && {
          out_file: this.#logPath(agent.name, "out"),
          error_file: this.#logPath(agent.name, "err"),
          merge_logs: true, // else PM2 appends -<pm_id> to both names
        }),
        env: fixtureEnv(agent, this.#runMarker),
      })),
    };
  }

  #logPath(name: string, stream: "out" | "err"): string {
    return path.join(this.#home ?? os.tmpdir(), "logs", `${name}-${stream}.log`);
  }

  agentLogFiles(name: string): string[] {
    if (this.#home === undefined) return [];
    const dir = path.join(this.#home, "logs");
    return [...rotatedFiles(dir, `${name}-out.log`), ...rotatedFiles(dir, `${name}-err.log`)];
  }

  get #pm2(): Pm2Api {
    if (this.#api === undefined) throw new Error("pm2: setup() first");
    return this.#api;
  }

  async setup(agents: readonly AgentSpec[]): Promise<void> {
    if (this.#home === undefined) {
      this.#home = mkdtempSync(path.join(os.tmpdir(), "bench-pm2-"));
      // The daemon inherits the client's environment; PM2_HOME there wins over the option.
      process.env.PM2_HOME = this.#home;
    }
    Object.assign(process.env, PM2_DAEMON_ENV);
    this.#agents = agents;
    writeFileSync(
      path.join(this.#home, "ecosystem.config.cjs"),
      `module.exports = ${JSON.stringify(this.#ecosystem(agents), null, 2)};\n`,
    );
    const Custom = (require("pm2") as { custom: Pm2Constructor }).custom;
    this.#api = new Custom({ pm2_home: this.#home, daemon_mode: true });
    await call("connect", (cb) => this.#pm2.connect(cb), 60_000);
    this.#daemonPid = readPidFile(path.join(this.#home, "pm2.pid"));
    if (this.#daemonPid === 0) throw new Error("pm2: no daemon pid file after connect");
  }

  async startAll(names?: readonly string[]): Promise<void> {
    const chosen =
      names === undefined ? this.#agents : this.#agents.filter((a) => names.includes(a.name));
    await call("start", (cb) => this.#pm2.start(this.#ecosystem(chosen), cb));
  }

  waitAllHealthy(
    names?: readonly string[],
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<void> {
    return waitHealthyByPort(this.#agents, names, timeoutMs, signal);
  }

  async #describe(name: string): Promise<Pm2ProcessDescription | undefined> {
    const list = await call<Pm2ProcessDescription[]>("describe", (cb) =>
      this.#pm2.describe(name, cb),
    );
    return list[0];
  }

  async pid(name: string): Promise<number> {
    return (await this.#describe(name))?.pid ?? 0;
  }

  async crash(name: string): Promise<Crash> {
    agentNamed(this.#agents, name);
    return killPid(await this.pid(name));
  }

  async stopAll(): Promise<void> {
    await call("stop all", (cb) => this.#pm2.stop("all", cb), 300_000);
  }

  readonly listCall: StatusCall = {
    label: "list()",
    run: () => call("list", (cb) => this.#pm2.list(cb)),
  };

  oneCall(name: string): StatusCall {
    return { label: "describe(name)", run: () => this.#describe(name) };
  }

  async reportedState(name: string): Promise<ReportedState> {
    const description = await this.#describe(name);
    return {
      state: description?.pm2_env?.status ?? "unknown",
      pid: description?.pid ?? 0,
      restarts: description?.pm2_env?.restart_time ?? 0,
    };
  }

  daemonPid(): number | undefined {
    return this.#daemonPid > 0 ? this.#daemonPid : undefined;
  }

  /** `pm2 jlist` through the CLI (a Node start per call), for a few samples in the report. */
  jlistCli(): void {
    execFileSync(PM2_BIN, ["jlist"], {
      stdio: ["ignore", "pipe", "ignore"],
      env: process.env,
      maxBuffer: 64 << 20,
    });
  }

  async teardown(): Promise<void> {
    const api = this.#api;
    if (api !== undefined) {
      try {
        await call("killDaemon", (cb) => api.killDaemon(cb), 120_000);
      } catch {
        // The pid wait below ends it anyway.
      }
      await new Promise<void>((resolve) => {
        api.disconnect(() => resolve());
        setTimeout(resolve, 1_000).unref();
      });
    }
    if (this.#daemonPid > 0) await waitPidGone(this.#daemonPid, 10_000);
    this.#api = undefined;
    this.#daemonPid = 0;
  }

  /** Removes the PM2_HOME of this run; call once at the very end. */
  removeHome(): void {
    if (this.#home !== undefined) rmSync(this.#home, { recursive: true, force: true });
  }
}
