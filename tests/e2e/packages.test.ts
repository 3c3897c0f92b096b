/**
 * Agent packages end to end: the real CLI installs a directory (packed with its .atollignore)
 * into the real daemon, the bundled atoll-agent runs it and answers a prompt with the echo
 * model, a hostile archive leaves nothing behind, and remove takes the process and the files.
 */
import { randomBytes } from "node:crypto";
import { lstat, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { runCli } from "../cli/helpers.ts";
import { realDaemonScope } from "../cli/real-daemon-scope.ts";
import { tarGz } from "../packages/archives.ts";
import { startDaemon, workspace } from "./daemon.ts";

const { children, daemons, cleanups, pids } = realDaemonScope();

/** A port range of this test file, away from the other tests' ranges. */
const basePort = 31_000 + (process.pid % 40) * 25;

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

describe("atoll-deploy install and remove", () => {
  it("installs a directory, runs it, refuses a hostile archive and removes it again", {
    timeout: 90_000,
  }, async () => {
    const ws = await workspace({});
    cleanups.push(ws.cleanup);
    const daemon = await startDaemon([
      "--agents-dir",
      ws.agentsDir,
      "--state-dir",
      ws.stateDir,
      "--base-port",
      String(basePort),
    ]);
    daemons.push(daemon);
    const server = ["--server", daemon.address];

    // The agent's source on the client side: an echo agent with a file its .atollignore drops.
    const source = await mkdtemp(path.join(os.tmpdir(), "atoll-src-"));
    cleanups.push(() => rm(source, { recursive: true, force: true }));
    const dir = path.join(source, "echoer");
    await mkdir(path.join(dir, "notes"), { recursive: true });
    await writeFile(
      path.join(dir, "agent.toml"),
      '[agent]\ndescription = "answers in echoes"\n\n[llm]\nmodel = "echo"\n\n[deployment]\nhealth_check_interval = 1\nstop_timeout = 5\n',
    );
    await writeFile(path.join(dir, "notes", "readme.md"), "kept\n");
    await writeFile(path.join(dir, "secret.env"), "TOKEN=do-not-ship\n");
    await writeFile(path.join(dir, ".atollignore"), "*.env\n");

    const installed = await runCli(children, ["install", dir, ...server]);
    expect(installed.stderr).toBe("");
    expect(installed.code).toBe(0);
    expect(installed.stdout).toMatch(/^✓ Agent echoer installed \(sha256 [0-9a-f]{12}…\)\n$/);
    const link = path.join(ws.stateDir, "packages", "echoer");
    expect(await exists(path.join(link, "notes", "readme.md"))).toBe(true);
    expect(await exists(path.join(link, "secret.env"))).toBe(false);

    // Packing is reproducible: the same directory again is the same package.
    const again = await runCli(children, ["install", dir, ...server]);
    expect(again.stdout).toMatch(/^✓ Agent echoer already installed/);

    const deployed = await runCli(children, ["deploy", "echoer", ...server]);
    expect(deployed.code).toBe(0);
    const port = Number(/deployed on port (\d+)/.exec(deployed.stdout)?.[1]);
    const status = await daemon.client.getStatus({ name: "echoer" });
    const pid = status.agent?.pid ?? 0;
    pids.add(pid);
    expect(status.agent?.installedPackage?.sha256).toMatch(/^[0-9a-f]{64}$/);
    const reply = await fetch(`http://127.0.0.1:${port}/prompt`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "hello from a package" }),
    });
    expect(reply.status).toBe(200);
    expect(((await reply.json()) as { response: string }).response).toContain(
      "hello from a package",
    );

    // A hostile archive: refused with the cause, exit 1, nothing new on disk.
    const before = await readdir(path.join(ws.stateDir, "packages"));
    const evil = path.join(source, "evil.tar.gz");
    await writeFile(
      evil,
      tarGz([
        { name: "evil/agent.toml", content: '[agent]\nname = "evil"\n' },
        { name: "evil/../../../tmp/atoll-escaped", content: "x" },
      ]),
    );
    const refused = await runCli(children, ["install", evil, ...server]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^✗ package refused: entry .* leaves the package with "\.\." \(PACKAGE_INVALID\)\n$/,
    );
    expect(await readdir(path.join(ws.stateDir, "packages"))).toEqual(before);
    expect(await readdir(path.join(ws.stateDir, "packages", ".staging"))).toEqual([]);

    const missing = await runCli(children, [
      "install",
      path.join(source, "nothing-here"),
      ...server,
    ]);
    expect(missing.code).toBe(2);

    const removed = await runCli(children, ["remove", "echoer", "--json", ...server]);
    expect(removed.code).toBe(0);
    expect(JSON.parse(removed.stdout).agent.state).toBe("AGENT_STATE_STOPPED");
    expect(isGroupAlive(pid)).toBe(false);
    expect(await exists(link)).toBe(false);
    expect(await exists(path.join(ws.stateDir, "packages", ".store", "echoer"))).toBe(false);

    const gone = await runCli(children, ["remove", "echoer", ...server]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/AGENT_NOT_FOUND/);
  });

  it("brings an installed, deployed agent back after a daemon restart", {
    timeout: 90_000,
  }, async () => {
    const ws = await workspace({});
    cleanups.push(ws.cleanup);
    const args = [
      "--agents-dir",
      ws.agentsDir,
      "--state-dir",
      ws.stateDir,
      "--base-port",
      String(basePort + 10),
    ];
    const first = await startDaemon(args);
    daemons.push(first);
    const source = await mkdtemp(path.join(os.tmpdir(), "atoll-src-"));
    cleanups.push(() => rm(source, { recursive: true, force: true }));
    const dir = path.join(source, "keeper");
    await mkdir(dir);
    await writeFile(
      path.join(dir, "agent.toml"),
      '[llm]\nmodel = "echo"\n[deployment]\nstop_timeout = 5\n',
    );
    const installed = await runCli(children, [
      "install",
      dir,
      "--start",
      "--server",
      first.address,
    ]);
    expect(installed.stdout).toMatch(
      /^✓ Agent keeper installed \(sha256 [0-9a-f]{12}…\) and deployed on port \d+\n$/,
    );
    const sha = (await first.client.getStatus({ name: "keeper" })).agent?.installedPackage?.sha256;
    daemons.splice(daemons.indexOf(first), 1);
    expect(await first.stop("SIGTERM")).toBe(0);

    const second = await startDaemon(args);
    daemons.push(second);
    // Event-driven: watch until the restored agent is RUNNING.
    for await (const event of second.client.watchHealth({ names: ["keeper"] })) {
      const agent = event.agent;
      if (agent?.state !== AgentState.RUNNING) continue;
      pids.add(agent.pid);
      expect(agent.installedPackage?.sha256).toBe(sha);
      break;
    }
  });

  it("refuses a package over --max-package-bytes before it is sent", {
    timeout: 60_000,
  }, async () => {
    const ws = await workspace({});
    cleanups.push(ws.cleanup);
    const daemon = await startDaemon([
      "--agents-dir",
      ws.agentsDir,
      "--state-dir",
      ws.stateDir,
      "--max-package-bytes",
      "2KiB",
    ]);
    daemons.push(daemon);
    const source = await mkdtemp(path.join(os.tmpdir(), "atoll-src-"));
    cleanups.push(() => rm(source, { recursive: true, force: true }));
    const dir = path.join(source, "bulky");
    await mkdir(dir);
    await writeFile(path.join(dir, "agent.toml"), '[llm]\nmodel = "echo"\n');
    await writeFile(path.join(dir, "noise.bin"), randomBytes(16 * 1024));
    const refused = await runCli(children, ["install", dir, "--server", daemon.address]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^✗ Agent bulky: package refused: the archive is larger than max_package_bytes, 2048 bytes \(\d+ bytes announced\) \(PACKAGE_INVALID\)\n$/,
    );
    expect(await readdir(path.join(ws.stateDir, "packages", ".store"))).toEqual([]);
    expect(await readdir(path.join(ws.stateDir, "packages", ".staging"))).toEqual([]);
  });
});
