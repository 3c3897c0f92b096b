/**
 * The release as a user gets it (SPEC §10): the tarball of `npm pack` installed globally into a
 * temporary prefix; its daemon, CLI, agent runtime and library run from there, on Node 24, and
 * both executables refuse an old Node in one line.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { filesBelow, type InstalledPackage, packAndInstall, tarballFiles } from "./installed.ts";

const run = promisify(execFile);

/** The machine's system Node (20 here), too old for the package. */
const OLD_NODE = "/usr/bin/node";
const oldNodeVersion = spawnSync(OLD_NODE, ["--version"], { encoding: "utf8" }).stdout?.trim();
const haveOldNode = /^v(1\d|2[01])\./.test(oldNodeVersion ?? "");

const basePort = 31_000 + (process.pid % 20) * 40;

let pkg: InstalledPackage;
const children: ChildProcess[] = [];
const agentPids = new Set<number>();

beforeAll(async () => {
  pkg = await packAndInstall();
}, 300_000);

afterAll(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  const left = [...agentPids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  await pkg?.remove();
  expect(left).toEqual([]);
});

/** PATH with Node 24 (this test's Node) first, then the installed executables. */
function modernEnv(home: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HOME: home,
    XDG_STATE_HOME: path.join(home, "state"),
    PATH: [path.dirname(process.execPath), pkg.binDir, process.env.PATH].join(":"),
  };
}

/** An agents directory with one agent run by the bundled runtime (no command) and the echo model. */
async function agentsDir(root: string): Promise<string> {
  const dir = path.join(root, "agents");
  await mkdir(path.join(dir, "echo"), { recursive: true });
  await writeFile(
    path.join(dir, "echo", "agent.toml"),
    '[agent]\nname = "echo"\n\n[llm]\nmodel = "echo"\n\n[deployment]\nstop_timeout = 2\n',
  );
  return dir;
}

async function prompt(port: number, text: string): Promise<unknown> {
  const response = await fetch(`http://127.0.0.1:${port}/prompt`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: text }),
  });
  return response.json();
}

describe("the packed package", () => {
  it("ships the compiled code, the dashboard, the executables, README and LICENSE, and nothing else", async () => {
    const files = await tarballFiles(pkg.tarball);
    const outside = files.filter(
      (f) =>
        !/^(bin\/[a-z-]+\.js|dist\/(src|gen)\/.+\.(js|js\.map|d\.ts)|dist\/dist-ui\/[\w.-]+)$/.test(
          f,
        ),
    );
    expect(outside).toEqual(["LICENSE", "README.md", "package.json"]);
    expect(files).toEqual(
      expect.arrayContaining([
        "bin/atoll-deploy.js",
        "bin/atoll-agent.js",
        "bin/launch.js",
        "dist/src/index.js",
        "dist/src/index.d.ts",
        "dist/src/client.js",
        "dist/src/client.d.ts",
        "dist/src/cli/main.js",
        "dist/src/agent/main.js",
        "dist/gen/atoll/deployment/v1/agent_pb.js",
        "dist/dist-ui/index.html",
      ]),
    );
    const installed = await filesBelow(pkg.packageDir);
    const ours = installed.filter((f) => !f.startsWith("node_modules/"));
    expect(ours.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    for (const name of ["atoll-deploy", "atoll-agent"]) {
      expect((await stat(path.join(pkg.binDir, name))).mode & 0o111).not.toBe(0);
    }
  });

  it.skipIf(!haveOldNode)(
    `makes both executables refuse ${oldNodeVersion} in one line with exit status 2`,
    async () => {
      const env = { ...process.env, PATH: [path.dirname(OLD_NODE), pkg.binDir].join(":") };
      for (const name of ["atoll-deploy", "atoll-agent"]) {
        const result = spawnSync(path.join(pkg.binDir, name), ["--version"], {
          env,
          encoding: "utf8",
        });
        expect(result.status).toBe(2);
        expect(result.stdout).toBe("");
        expect(result.stderr).toBe(
          `${name}: needs Node.js 22.0.0 or later, but this is Node.js ${oldNodeVersion?.slice(1)} (${OLD_NODE})\n`,
        );
      }
    },
  );

  it("serves from the installed daemon: the installed CLI deploys a bundled-runtime agent that answers", async () => {
    const home = path.join(pkg.dir, "serve-home");
    const agents = await agentsDir(home);
    const env = modernEnv(home);
    const daemon = spawn(
      path.join(pkg.binDir, "atoll-deploy"),
      [
        "serve",
        "--agents-dir",
        agents,
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--host",
        "127.0.0.1",
        "--base-port",
        String(basePort),
      ],
      { env, stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(daemon);
    let log = "";
    daemon.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      log += chunk;
    });
    const exited = once(daemon, "exit");
    const lines = createInterface({ input: daemon.stdout ?? process.stdin });
    const printed = (pattern: RegExp) =>
      new Promise<string>((resolve, reject) => {
        lines.on("line", (line) => {
          const match = pattern.exec(line);
          if (match?.[1] !== undefined) resolve(match[1]);
        });
        void exited.then(() => reject(new Error(`the daemon exited before listening:\n${log}`)));
      });
    const [address, dashboard] = await Promise.all([
      printed(/^atoll-deploy listening on (\S+)$/),
      printed(/^atoll-deploy dashboard on (\S+)$/),
    ]);
    // The dashboard the package ships (dist/dist-ui), served by the installed daemon.
    const page = await fetch(dashboard);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<html");

    const deployed = await run(
      path.join(pkg.binDir, "atoll-deploy"),
      ["deploy", "echo", "--server", address, "--json"],
      { env },
    );
    const agent = JSON.parse(deployed.stdout).agent as { pid: number; port: number };
    agentPids.add(agent.pid);
    expect(agent.port).toBe(basePort);
    // The bundled runtime of the installed package, compiled: nothing is type-stripped.
    const argv = (await readFile(`/proc/${agent.pid}/cmdline`, "utf8")).split("\0");
    expect(argv.slice(0, 2)).toEqual([
      process.execPath,
      path.join(pkg.packageDir, "dist/src/agent/main.js"),
    ]);
    expect(await prompt(agent.port, "hello")).toEqual({
      response: "[echo] hello",
      model: "echo",
    });

    daemon.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);
    expect(isGroupAlive(agent.pid)).toBe(false);
    const config = log.split("\n").find((line) => line.includes('"effective configuration"'));
    expect(JSON.parse(config ?? "{}")).toMatchObject({
      config: { base_port: basePort, listen: "127.0.0.1:0" },
      sources: { base_port: "flag" },
    });
  });

  it("embeds in a program that imports the library and the client from the installed package", async () => {
    const app = path.join(pkg.dir, "app");
    await mkdir(path.join(app, "node_modules"), { recursive: true });
    await symlink(pkg.packageDir, path.join(app, "node_modules", "atoll-deploy"));
    await writeFile(path.join(app, "package.json"), '{ "type": "module", "private": true }\n');
    const agents = await agentsDir(app);
    await writeFile(
      path.join(app, "main.js"),
      `import { DeploymentServer, DeployError } from "atoll-deploy";
import { AgentState, createDeploymentClient } from "atoll-deploy/client";
import manifest from "atoll-deploy/package.json" with { type: "json" };

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const server = new DeploymentServer({
  agentsDirectory: ${JSON.stringify(agents)},
  stateDir: ${JSON.stringify(path.join(app, "state"))},
  host: "127.0.0.1",
  basePort: ${basePort + 10},
  listen: "127.0.0.1:0",
  logger: quiet,
});
await server.start();
const out = { version: manifest.version };
try {
  const agent = await server.startAgent("echo");
  out.pid = agent.pid;
  out.state = agent.state;
  const reply = await fetch("http://127.0.0.1:" + agent.port + "/prompt", {
    method: "POST",
    body: JSON.stringify({ prompt: "hi" }),
  });
  out.reply = await reply.json();
  const client = createDeploymentClient(server.address);
  const listed = await client.listAgents({});
  out.listed = listed.agents.map((a) => [a.name, a.state === AgentState.RUNNING]);
  client.close();
  try {
    await server.startAgent("missing");
  } catch (error) {
    out.error = { isDeployError: error instanceof DeployError, reason: error.reason };
  }
} finally {
  out.stopped = await server.stop();
}
process.stdout.write(JSON.stringify(out));
`,
    );
    const { stdout } = await run(process.execPath, ["main.js"], {
      cwd: app,
      env: modernEnv(app),
      timeout: 60_000,
    });
    const out = JSON.parse(stdout);
    agentPids.add(out.pid);
    expect(out).toMatchObject({
      version: JSON.parse(await readFile(path.join(pkg.packageDir, "package.json"), "utf8"))
        .version,
      state: "RUNNING",
      reply: { response: "[echo] hi", model: "echo" },
      listed: [["echo", true]],
      error: { isDeployError: true, reason: "AGENT_NOT_FOUND" },
      stopped: { killedAgents: false },
    });
    expect(isGroupAlive(out.pid)).toBe(false);
  });
});
