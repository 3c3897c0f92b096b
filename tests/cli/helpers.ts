/**
 * Test helpers for the CLI: a fake DeploymentService built with the project's own adapter and
 * error mapping, canned agents, and the real `atoll-deploy` executable run as a child process.
 */
import { type ChildProcess, spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import {
  type Agent,
  AgentSchema,
  AgentState,
  HealthStatus,
} from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { DeployError } from "../../src/core/errors.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { createErrorToStatus } from "../../src/rpc/error-mapping.ts";
import { addService } from "../../src/rpc/grpc-adapter.ts";
import type { ServiceHandlers } from "../../src/rpc/service-handlers.ts";

export const CLI = fileURLToPath(new URL("../../bin/atoll-deploy.js", import.meta.url));

/** A fixed instant for canned timestamps: 2025-06-01T12:00:00Z. */
export const T0_MS = Date.UTC(2025, 5, 1, 12, 0, 0);

/** An Agent message with plausible defaults. */
export function agent(init: MessageInitShape<typeof AgentSchema> & { name: string }): Agent {
  return create(AgentSchema, {
    state: AgentState.DISCOVERED,
    health: HealthStatus.UNKNOWN,
    configPath: `/srv/agents/${init.name}/agent.toml`,
    maxRestarts: 3,
    ...init,
  });
}

/** alpha (discovered), beta (running), broken (invalid). */
export function cannedAgents(): Map<string, Agent> {
  return new Map([
    ["alpha", agent({ name: "alpha" })],
    [
      "beta",
      agent({
        name: "beta",
        state: AgentState.RUNNING,
        health: HealthStatus.HEALTHY,
        port: 8101,
        pid: 4242,
        restartCount: 1,
        startTime: timestampFromMs(T0_MS),
        stateReason: "STARTED",
        stateMessage: "HTTP 200",
      }),
    ],
    [
      "broken",
      agent({
        name: "broken",
        state: AgentState.INVALID,
        stateReason: "CONFIG_INVALID",
        stateMessage: "agent.toml: deployment.port: expected an integer",
      }),
    ],
  ]);
}

export function notFound(name: string): DeployError {
  return new DeployError("AGENT_NOT_FOUND", `agent ${name} not found`, { agent: name });
}

type Handlers = ServiceHandlers<typeof DeploymentService>;

const unimplemented = (): never => {
  throw new DeployError("INVALID_ARGUMENT", "not implemented by this fake");
};

/** Handlers over `agents`: lookups, deploy → RUNNING on port 8100+, undeploy → STOPPED. */
export function fakeHandlers(
  agents: Map<string, Agent>,
  overrides: Partial<Handlers> = {},
): Handlers {
  const find = (name: string): Agent => {
    const found = agents.get(name);
    if (found === undefined) throw notFound(name);
    return found;
  };
  const start = (name: string): Agent => {
    const current = find(name);
    if (current.state === AgentState.INVALID) {
      throw new DeployError("AGENT_CONFIG_INVALID", current.stateMessage, { agent: name });
    }
    const running = create(AgentSchema, {
      ...current,
      state: AgentState.RUNNING,
      health: HealthStatus.HEALTHY,
      port: current.port === 0 ? 8100 : current.port,
      pid: 1234,
      stateReason: "STARTED",
    });
    agents.set(name, running);
    return running;
  };
  return {
    deploy: async (request) => ({ agent: start(request.name) }),
    restart: async (request) => ({ agent: start(request.name) }),
    undeploy: async (request) => {
      const stopped = create(AgentSchema, {
        ...find(request.name),
        state: AgentState.STOPPED,
        health: HealthStatus.UNKNOWN,
        port: 0,
        pid: 0,
        stateReason: "STOPPED",
        stateMessage: "stopped on request",
      });
      agents.set(request.name, stopped);
      return { agent: stopped };
    },
    getStatus: async (request) => ({ agent: find(request.name) }),
    listAgents: async () => ({
      agents: [...agents.values()].sort((a, b) => a.name.localeCompare(b.name)),
    }),
    installAgent: async () => unimplemented(),
    removeAgent: async () => unimplemented(),
    // biome-ignore lint/correctness/useYield: a fake that fails before its first message
    streamLogs: async function* () {
      unimplemented();
    },
    // biome-ignore lint/correctness/useYield: a fake that fails before its first message
    watchHealth: async function* () {
      unimplemented();
    },
    ...overrides,
  };
}

export interface FakeServer {
  readonly address: string;
  readonly port: number;
  readonly server: Server;
  /** Headers (`authorization`) of every call, in order. */
  readonly authorizations: (string | undefined)[];
}

/** Starts a fake server on 127.0.0.1 (`port` 0 picks a free one). */
export async function startFakeServer(handlers: Handlers, port = 0): Promise<FakeServer> {
  const server = new Server();
  const authorizations: (string | undefined)[] = [];
  const recorded = Object.fromEntries(
    Object.entries(handlers).map(([name, handler]) => [
      name,
      (request: unknown, context: { metadata: { get(key: string): unknown[] } }) => {
        const value = context.metadata.get("authorization")[0];
        authorizations.push(typeof value === "string" ? value : undefined);
        return (handler as (r: unknown, c: unknown) => unknown)(request, context);
      },
    ]),
  ) as unknown as Handlers;
  addService(server, DeploymentService, recorded, {
    toStatus: createErrorToStatus(silentLogger),
  });
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (error, p) => {
      if (error !== null) reject(error);
      else resolve(p);
    });
  });
  return { address: `127.0.0.1:${bound}`, port: bound, server, authorizations };
}

/** A port nothing listens on: bound once, then released. */
export async function closedPort(): Promise<number> {
  const { server, port } = await startFakeServer(fakeHandlers(new Map()));
  server.forceShutdown();
  return port;
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** An `atoll-deploy` child whose output accumulates and can be waited on. */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<CliResult>;
  readonly #waiters: (() => void)[] = [];

  constructor(child: ChildProcess) {
    this.child = child;
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stdout += chunk;
      this.#notify();
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      this.stderr += chunk;
      this.#notify();
    });
    this.exited = new Promise((resolve) => {
      child.on("close", (code, signal) => {
        this.#notify();
        resolve({ code, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  #notify(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  /**
   * Resolves once `predicate` holds for the output so far; rejects with the output so far if
   * the child exits first or `timeoutMs` passes.
   */
  async waitFor(
    predicate: (p: CliProcess) => boolean,
    what = "output",
    timeoutMs = 10_000,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const fail = (why: string): Error =>
      new Error(`${why} ${what}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
    for (;;) {
      if (predicate(this)) return;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw fail("atoll-deploy exited before");
      }
      const left = deadline - Date.now();
      if (left <= 0) throw fail("timed out waiting for");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  write(text: string): void {
    this.child.stdin?.write(text);
  }
}

/** Children started by `spawnCli`; `killAll()` in afterEach ends any still running. */
export class Children {
  readonly #all: CliProcess[] = [];

  track(process: CliProcess): CliProcess {
    this.#all.push(process);
    return process;
  }

  async killAll(): Promise<void> {
    for (const p of this.#all.splice(0)) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
      await p.exited;
    }
  }
}

/** A config directory that never exists: no contexts file of the machine's user leaks in. */
const NO_CONFIG_HOME = path.join(os.tmpdir(), `atoll-no-config-${process.pid}`);

/**
 * The environment of a CLI child: no colour, no inherited server address or context, and an
 * empty contexts file (unless `extra` sets XDG_CONFIG_HOME).
 */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NO_COLOR: "1",
    XDG_CONFIG_HOME: NO_CONFIG_HOME,
    ...extra,
  };
  delete env.ATOLL_DEPLOY_SERVER;
  if (extra.ATOLL_DEPLOY_CONTEXT === undefined) delete env.ATOLL_DEPLOY_CONTEXT;
  return env;
}

/** Starts `atoll-deploy <args>` as a child (stdin a pipe). */
export function spawnCli(
  children: Children,
  args: readonly string[],
  env: NodeJS.ProcessEnv = cliEnv(),
): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  return children.track(new CliProcess(child));
}

/** Runs `atoll-deploy <args>` to completion with stdin closed. */
export async function runCli(
  children: Children,
  args: readonly string[],
  env?: NodeJS.ProcessEnv,
): Promise<CliResult> {
  const process = spawnCli(children, args, env);
  process.child.stdin?.end();
  return process.exited;
}

/** Resolves when `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true }),
  );
}
