/**
 * Runs the real `atoll-deploy serve` as a child process for end-to-end tests:
 * waits for its readiness line, gives a typed gRPC client, and stops it by pid.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { credentials } from "@grpc/grpc-js";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { createClient, type ServiceClient } from "../../src/rpc/grpc-client.ts";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = path.join(REPO, "bin", "atoll-deploy.js");

export interface Daemon {
  readonly child: ChildProcess;
  readonly address: string;
  /** Base URL of the HTTP listener (`http://127.0.0.1:PORT`); rejects when it is off. */
  readonly httpUrl: Promise<string>;
  readonly client: ServiceClient<typeof DeploymentService>;
  /** Everything the daemon wrote to stderr (its JSON log). */
  stderr(): string;
  /** Sends `signal` and resolves with the exit code (or the signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** A temp workspace: agents dir, state dir, and cleanup. */
export async function workspace(agents: Record<string, { file: string; text: string }>) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-e2e-"));
  const agentsDir = path.join(dir, "agents");
  await mkdir(agentsDir, { recursive: true });
  for (const [name, { file, text }] of Object.entries(agents)) {
    await mkdir(path.join(agentsDir, name), { recursive: true });
    await writeFile(path.join(agentsDir, name, file), text.replaceAll("@DIR@", dir));
  }
  return {
    dir,
    agentsDir,
    stateDir: path.join(dir, "state"),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * Starts `atoll-deploy serve` with `args` (gRPC and HTTP on 127.0.0.1:0 unless `args` say
 * otherwise: never the fixed default ports, which parallel tests would fight over) and waits
 * until it listens.
 */
export async function startDaemon(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<Daemon> {
  const defaults = ["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"];
  const child = spawn(process.execPath, [CLI, "serve", ...defaults, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    log += chunk;
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const lines = createInterface({ input: child.stdout ?? process.stdin });
  const printed = (pattern: RegExp, what: string) =>
    new Promise<string>((resolve, reject) => {
      lines.on("line", (line) => {
        const match = pattern.exec(line);
        if (match?.[1]) resolve(match[1]);
      });
      void exited.then(([code]) =>
        reject(new Error(`daemon exited with ${code} before ${what}:\n${log}`)),
      );
    });
  const httpUrl = printed(/dashboard on (\S+?)\/?$/, "its HTTP listener listened");
  httpUrl.catch(() => undefined); // awaited only by tests that use it
  const address = await printed(/listening on (\S+)/, "listening");
  const client = createClient(DeploymentService, address, credentials.createInsecure());
  return {
    child,
    address,
    httpUrl,
    client,
    stderr: () => log,
    async stop(signal = "SIGTERM") {
      client.close();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code, sig] = await exited;
      return code ?? sig ?? "unknown";
    },
  };
}
