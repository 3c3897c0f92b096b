/**
 * supervisord (Debian `supervisor`) as a peer: a generated supervisord.conf with one
 * [program:x] per agent, the daemon in the foreground (`-n`) as a child of the harness with its
 * pidfile and log in a temp dir, its XML-RPC API on 127.0.0.1:PORT (inet_http_server) called
 * over node:http for every operation and status query.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type AgentSpec, fixtureArgs, fixtureEnv, NODE } from "../lib/fixture.ts";
import { freePort } from "../lib/ports.ts";
import { rotatedFiles } from "../lib/procfs.ts";
import { pollUntil } from "../lib/timing.ts";
import { XmlRpcClient, type XmlRpcValue } from "../lib/xmlrpc.ts";
import { DaemonProcess } from "./daemon-process.ts";
import {
  agentNamed,
  type Crash,
  killPid,
  type ReportedState,
  type StatusCall,
  type Tool,
  waitHealthyByPort,
} from "./tool.ts";

export const SUPERVISORD = "/usr/bin/supervisord";

/** The per-program settings, written out in the report and bench/README.md. */
export const SUPERVISORD_PROGRAM_SETTINGS = [
  "autostart=false",
  "autorestart=true",
  "startsecs=1",
  "startretries=3",
  "stopsignal=TERM",
  "stopwaitsecs=2",
  "stopasgroup=true",
  "killasgroup=true",
  "redirect_stderr=true",
] as const;

interface ProcessInfo {
  readonly name: string;
  readonly statename: string;
  readonly pid: number;
}

function quoteEnv(value: string): string {
  return `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** supervisord.conf for `agents`, with everything (socket, pidfile, logs) under `dir`. */
export function supervisordConf(
  dir: string,
  port: number,
  agents: readonly AgentSpec[],
  runMarker: string,
): string {
  const lines = [
    "[supervisord]",
    "nodaemon=true",
    "user=root",
    `logfile=${path.join(dir, "supervisord.log")}`,
    `pidfile=${path.join(dir, "supervisord.pid")}`,
    `childlogdir=${path.join(dir, "logs")}`,
    "",
    "[inet_http_server]",
    `port=127.0.0.1:${port}`,
    "",
    "[rpcinterface:supervisor]",
    "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
    "",
    "[supervisorctl]",
    `serverurl=http://127.0.0.1:${port}`,
    "",
  ];
  for (const agent of agents) {
    const env = Object.entries(fixtureEnv(agent, runMarker))
      .map(([k, v]) => `${k}=${quoteEnv(v)}`)
      .join(",");
    lines.push(
      `[program:${agent.name}]`,
      `command=${[NODE, ...fixtureArgs(agent)].join(" ")}`,
      `directory=${dir}`,
      ...SUPERVISORD_PROGRAM_SETTINGS,
      `stdout_logfile=${path.join(dir, "logs", `${agent.name}.log`)}`,
      // Its defaults are 50MB and 10 backups; a scenario that sets limits gets them.
      ...(agent.logs === undefined
        ? []
        : [
            `stdout_logfile_maxbytes=${agent.logs.maxBytes}`,
            `stdout_logfile_backups=${agent.logs.keep}`,
          ]),
      `environment=${env}`,
      "",
    );
  }
  return lines.join("\n");
}

export class SupervisordTool implements Tool {
  readonly name = "supervisord" as const;
  readonly #runMarker: string;
  #dir: string | undefined;
  #agents: readonly AgentSpec[] = [];
  #daemon: DaemonProcess | undefined;
  #rpc: XmlRpcClient | undefined;

  constructor(runMarker: string) {
    this.#runMarker = runMarker;
  }

  async unavailable(): Promise<string | undefined> {
    if (!existsSync(SUPERVISORD)) {
      return `${SUPERVISORD} not found (install Debian package \`supervisor\`: apt-get install supervisor)`;
    }
    return undefined;
  }

  async version(): Promise<string> {
    try {
      return execFileSync(SUPERVISORD, ["--version"], { encoding: "utf8" }).trim();
    } catch {
      return "unknown";
    }
  }

  describeConfig(): string {
    return `one [program:x] per agent: \`command=node fault-agent.mjs --port P\`, ${SUPERVISORD_PROGRAM_SETTINGS.join(", ")}; daemon \`supervisord -n -c <tmp>/supervisord.conf\`, XML-RPC on inet_http_server 127.0.0.1 (ephemeral port)`;
  }

  get #client(): XmlRpcClient {
    if (this.#rpc === undefined) throw new Error("supervisord: setup() first");
    return this.#rpc;
  }

  async setup(agents: readonly AgentSpec[]): Promise<void> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "bench-supervisord-"));
    this.#dir = dir;
    mkdirSync(path.join(dir, "logs"));
    this.#agents = agents;
    const port = await freePort();
    const conf = path.join(dir, "supervisord.conf");
    writeFileSync(conf, supervisordConf(dir, port, agents, this.#runMarker));
    this.#daemon = new DaemonProcess(SUPERVISORD, ["-n", "-c", conf], {
      env: { ...process.env },
      logPath: path.join(dir, "daemon.out"),
    });
    this.#rpc = new XmlRpcClient(port);
    const daemon = this.#daemon;
    await pollUntil(
      "supervisord XML-RPC answering",
      async () => {
        if (!daemon.running) throw new Error(`supervisord exited:\n${daemon.tail()}`);
        try {
          const state = (await this.#client.call("supervisor.getState", [], 1_000)) as {
            statename?: string;
          };
          return state.statename === "RUNNING" ? true : undefined;
        } catch {
          return undefined;
        }
      },
      { intervalMs: 50, timeoutMs: 30_000 },
    );
  }

  async startAll(names?: readonly string[]): Promise<void> {
    const chosen = names ?? this.#agents.map((a) => a.name);
    const calls: XmlRpcValue[] = chosen.map((name) => ({
      methodName: "supervisor.startProcess",
      params: [name, false],
    }));
    const results = (await this.#client.call("system.multicall", [calls])) as XmlRpcValue[];
    // supervisord's multicall answers each call with its bare result, or a fault struct.
    const faults = results.filter((r) => typeof r === "object" && r !== null && "faultCode" in r);
    if (faults.length > 0)
      throw new Error(`supervisord startProcess faults: ${JSON.stringify(faults.slice(0, 3))}`);
  }

  waitAllHealthy(
    names?: readonly string[],
    timeoutMs?: number,
    signal?: AbortSignal,
  ): Promise<void> {
    return waitHealthyByPort(this.#agents, names, timeoutMs, signal);
  }

  async #info(name: string): Promise<ProcessInfo> {
    return (await this.#client.call("supervisor.getProcessInfo", [name])) as unknown as ProcessInfo;
  }

  async pid(name: string): Promise<number> {
    return (await this.#info(name)).pid;
  }

  async crash(name: string): Promise<Crash> {
    agentNamed(this.#agents, name);
    return killPid(await this.pid(name));
  }

  async stopAll(): Promise<void> {
    await this.#client.call("supervisor.stopAllProcesses", [true], 300_000);
  }

  readonly listCall: StatusCall = {
    label: "getAllProcessInfo",
    run: () => this.#client.call("supervisor.getAllProcessInfo"),
  };

  oneCall(name: string): StatusCall {
    return { label: "getProcessInfo", run: () => this.#info(name) };
  }

  async reportedState(name: string): Promise<ReportedState> {
    const info = await this.#info(name);
    return { state: info.statename, pid: info.pid };
  }

  daemonPid(): number | undefined {
    return this.#daemon?.running === true ? this.#daemon.pid : undefined;
  }

  agentLogFiles(name: string): string[] {
    if (this.#dir === undefined) return [];
    return rotatedFiles(path.join(this.#dir, "logs"), `${name}.log`);
  }

  async teardown(): Promise<void> {
    // SIGTERM makes supervisord stop every program (TERM, then KILL after stopwaitsecs) and exit.
    await this.#daemon?.stop(30_000);
    this.#daemon = undefined;
    this.#rpc?.close();
    this.#rpc = undefined;
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = undefined;
  }
}
