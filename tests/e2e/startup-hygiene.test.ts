/**
 * Start-up hygiene of the real daemon: Unix sockets left by a killed daemon, sockets in use, and
 * token files that could never authenticate or that other users may read.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, lstat, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { credentials, Metadata } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { DeploymentService } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { createClient } from "../../src/rpc/grpc-client.ts";
import { CLI, type Daemon, REPO, startDaemon } from "./daemon.ts";

const run = promisify(execFile);
const daemons: Daemon[] = [];
const children: ChildProcess[] = [];
const servers: Server[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) expect(await d.stop("SIGTERM")).toBe(0);
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  }
  for (const server of servers.splice(0)) await new Promise((r) => server.close(r));
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-hyg-"));
  dirs.push(dir);
  return dir;
}

function serveArgs(dir: string): string[] {
  return ["--agents-dir", path.join(REPO, "atoll_agents"), "--state-dir", path.join(dir, "state")];
}

/** `serve` that is expected to stop by itself: its exit code and the last line of stderr. */
async function serveFails(args: string[]): Promise<{ code: number; last: string; stderr: string }> {
  const result = await run(process.execPath, [CLI, "serve", ...args]).then(
    () => ({ code: 0, stderr: "" }),
    (error: { code: number; stderr: string }) => error,
  );
  return { ...result, last: result.stderr.trim().split("\n").at(-1) ?? "" };
}

/** Leaves a socket file that nothing listens on, as a SIGKILLed daemon does. */
async function staleSocket(socket: string): Promise<void> {
  const child = spawn(
    process.execPath,
    [
      "-e",
      "require('node:net').createServer().listen(process.argv[1], () => console.log('up'))",
      socket,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.push(child);
  const lines = createInterface({ input: child.stdout ?? process.stdin });
  await once(lines, "line");
  child.kill("SIGKILL");
  await once(child, "exit");
  expect((await lstat(socket)).isSocket()).toBe(true);
}

describe("serve on a Unix socket", () => {
  it("replaces a stale socket left by a killed daemon, serves on it, and removes it on exit", async () => {
    const dir = await tempDir();
    const socket = path.join(dir, "atoll.sock");
    await staleSocket(socket);
    const daemon = await startDaemon([...serveArgs(dir), "--listen", `unix:${socket}`]);
    const client = createClient(DeploymentService, `unix:${socket}`, credentials.createInsecure());
    try {
      expect((await client.listAgents({})).agents.length).toBe(3);
    } finally {
      client.close();
    }
    expect(daemon.stderr()).toContain("removed a stale socket nothing was listening on");
    expect(await daemon.stop("SIGTERM")).toBe(0);
    await expect(lstat(socket)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("refuses a socket another server listens on, and leaves it alone", async () => {
    const dir = await tempDir();
    const socket = path.join(dir, "busy.sock");
    const other = createServer();
    servers.push(other);
    await new Promise<void>((resolve) => other.listen(socket, resolve));
    const { code, last } = await serveFails([...serveArgs(dir), "--listen", `unix:${socket}`]);
    expect(code).toBe(1);
    expect(last).toBe(
      `atoll-deploy serve: cannot listen on unix:${socket}: another server is listening on ${socket}`,
    );
    expect((await lstat(socket)).isSocket()).toBe(true);
  });

  it("refuses a path that is not a socket, and does not delete it", async () => {
    const dir = await tempDir();
    const file = path.join(dir, "precious.txt");
    await writeFile(file, "keep me\n");
    const { code, last } = await serveFails([...serveArgs(dir), "--listen", `unix:${file}`]);
    expect(code).toBe(1);
    expect(last).toContain("exists and is not a socket");
    expect(await readFile(file, "utf8")).toBe("keep me\n");
  });
});

describe("serve with an auth token file", () => {
  it.each([
    ["a space inside", "s3cret token\n", "whitespace at character 7"],
    ["a tab at the end", "s3cret\t\n", "whitespace at character 7"],
    [
      "a control character",
      "s3c\u0001ret\n",
      "non-printable or non-ASCII character at character 4",
    ],
    ["nothing but a newline", "\n", "is empty"],
  ])("exits 2 for a token with %s, without printing the token", async (_, content, problem) => {
    const dir = await tempDir();
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, content, { mode: 0o600 });
    const { code, last, stderr } = await serveFails([
      ...serveArgs(dir),
      "--listen",
      "127.0.0.1:0",
      "--auth-token-file",
      tokenFile,
    ]);
    expect(code).toBe(2);
    expect(last.startsWith(`atoll-deploy serve: auth token file ${tokenFile}: `)).toBe(true);
    expect(last).toContain(problem);
    if (content.trim().length > 3) expect(stderr).not.toContain("ret");
  });

  it("warns when other users may read the token file, and still serves with it", async () => {
    const dir = await tempDir();
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, "s3cret-token\n");
    await chmod(tokenFile, 0o644);
    const daemon = await startDaemon([...serveArgs(dir), "--auth-token-file", tokenFile]);
    daemons.push(daemon);
    const warning = daemon
      .stderr()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { level: string; msg: string })
      .find((entry) => entry.msg.includes("may be read by other users"));
    expect(warning).toMatchObject({ level: "warn" });
    expect(warning?.msg).toContain("mode 0644");
    const metadata = new Metadata();
    metadata.set("authorization", "Bearer s3cret-token");
    expect((await daemon.client.listAgents({}, { metadata })).agents.length).toBe(3);
  });
});
