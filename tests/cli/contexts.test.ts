/**
 * Contexts end to end: two real daemons (`atoll-deploy serve` children) as two contexts, plus a
 * dead one (nothing listens) and a hung one (accepts TCP, never answers), all driven through the
 * real `atoll-deploy` executable with its own contexts file.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type Daemon, startDaemon, workspace } from "../e2e/daemon.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { cliEnv, closedPort, runCli, spawnCli } from "./helpers.ts";
import { realDaemonScope } from "./real-daemon-scope.ts";

const { children, daemons, cleanups, pids } = realDaemonScope();

/** Port ranges of this file, away from the other tests' ranges. */
const basePort = 33_000 + (process.pid % 40) * 25;

/** A TCP server that accepts connections and never says a word: a hung daemon. */
async function hungServer(): Promise<{ address: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

async function daemonWith(name: string, port: number): Promise<Daemon> {
  const ws = await workspace({ [name]: { file: "agent.toml", text: faultAgentToml(name) } });
  cleanups.push(ws.cleanup);
  const daemon = await startDaemon([
    "--agents-dir",
    ws.agentsDir,
    "--state-dir",
    ws.stateDir,
    "--base-port",
    String(port),
  ]);
  daemons.push(daemon);
  return daemon;
}

describe("contexts across two real daemons", () => {
  it("adds contexts, deploys through one, merges all and reports the dead and the hung", {
    timeout: 90_000,
  }, async () => {
    const configHome = await mkdtemp(path.join(os.tmpdir(), "atoll-ctx-"));
    cleanups.push(() => rm(configHome, { recursive: true, force: true }));
    const hung = await hungServer();
    cleanups.push(hung.close);
    const [one, two] = await Promise.all([
      daemonWith("alpha", basePort),
      daemonWith("beta", basePort + 10),
    ]);
    const dead = `127.0.0.1:${await closedPort()}`;
    const env = cliEnv({ XDG_CONFIG_HOME: configHome });
    const cli = (args: string[], extra: Record<string, string> = {}) =>
      runCli(children, args, { ...env, ...extra });

    expect(await cli(["context", "add", "one", "--server", one.address])).toMatchObject({
      code: 0,
      stdout: `✓ Context one added (${one.address}); it is the current context\n`,
    });
    for (const [name, address] of [
      ["two", two.address],
      ["dead", dead],
      ["hung", hung.address],
    ] as const) {
      expect((await cli(["context", "add", name, "--server", address])).code).toBe(0);
    }
    const again = await cli(["context", "add", "two", "--server", "x:1"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/context two already exists/);

    const listed = await cli(["context", "list"]);
    expect(listed.stdout).toMatch(/^Current +Context +Server\n/);
    expect(listed.stdout).toMatch(new RegExp(`\\n\\* +one +${one.address}\\n`));
    expect(listed.stdout).toMatch(new RegExp(`\\n +two +${two.address}\\n`));

    // The current context takes the command; --context and ATOLL_DEPLOY_CONTEXT choose another.
    const deployed = await cli(["deploy", "alpha"]);
    expect(deployed.stderr).toBe("");
    expect(deployed.stdout).toMatch(/^✓ Agent alpha deployed on port \d+\n$/);
    const status = await cli(["status", "alpha", "--json", "--context", "one"]);
    pids.add((JSON.parse(status.stdout) as { agent: { pid: number } }).agent.pid);
    expect((await cli(["status", "beta", "--context", "two"])).code).toBe(0);
    expect((await cli(["list"], { ATOLL_DEPLOY_CONTEXT: "two" })).stdout).toMatch(/\nbeta +/);
    const unknown = await cli(["list", "--context", "nope"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown context "nope" (from --context)');

    const all = await cli(["list", "--all-contexts", "--connect-timeout", "2"]);
    expect(all.code).toBe(1);
    expect(all.stdout).toMatch(/^Context +Agent Name +Status +Port +PID +Health +Restarts\n/);
    expect(all.stdout).toMatch(/\none +alpha +RUNNING +\d+ +\d+ +HEALTHY +0\n/);
    expect(all.stdout).toMatch(/\ntwo +beta +DISCOVERED +- +- +UNKNOWN +0\n/);
    const errors = all.stderr.trimEnd().split("\n");
    expect(errors).toHaveLength(2);
    expect(errors.find((line) => line.includes("(context dead)"))).toMatch(
      new RegExp(`^✗ cannot reach atoll-deploy at ${dead} \\(context dead\\): .*ECONNREFUSED`),
    );
    expect(errors.find((line) => line.includes("(context hung)"))).toBe(
      `✗ cannot reach atoll-deploy at ${hung.address} (context hung): no answer within 2 s`,
    );

    const json = await cli(["list", "--all-contexts", "--json", "--connect-timeout", "2"]);
    expect(json.code).toBe(1);
    const doc = JSON.parse(json.stdout) as {
      contexts: { context: string; agents?: { name: string }[]; error?: string }[];
    };
    expect(doc.contexts.map((c) => c.context)).toEqual(["dead", "hung", "one", "two"]);
    expect(doc.contexts[2]?.agents?.map((a) => a.name)).toEqual(["alpha"]);
    expect(doc.contexts[0]?.error).toMatch(/cannot reach/);

    const watch = spawnCli(children, ["watch", "--all-contexts", "--connect-timeout", "2"], env);
    await watch.waitFor(
      (p) =>
        / one alpha RUNNING\/HEALTHY/.test(p.stdout) &&
        / two beta DISCOVERED\/UNKNOWN/.test(p.stdout) &&
        p.stderr.includes("(context dead)") &&
        p.stderr.includes("(context hung)"),
      "both snapshots and both failures",
      20_000,
    );
    // The others keep going: a change on two still shows.
    expect((await cli(["deploy", "beta", "--context", "two"])).code).toBe(0);
    await watch.waitFor((p) => / two beta RUNNING\/HEALTHY/.test(p.stdout), "beta running");
    const beta = await cli(["status", "beta", "--json", "--context", "two"]);
    pids.add((JSON.parse(beta.stdout) as { agent: { pid: number } }).agent.pid);
    watch.child.kill("SIGINT");
    expect((await watch.exited).code).toBe(1);

    expect(await cli(["context", "use", "two"])).toMatchObject({
      code: 0,
      stdout: `✓ Switched to context two (${two.address})\n`,
    });
    expect((await cli(["undeploy", "beta"])).stdout).toBe("✓ Agent beta stopped\n");
    expect((await cli(["context", "remove", "dead"])).code).toBe(0);
    expect((await cli(["context", "use", "dead"])).code).toBe(1);
    expect((await cli(["undeploy", "alpha", "--context", "one"])).code).toBe(0);
  });
});
