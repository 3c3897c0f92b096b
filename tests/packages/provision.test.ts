/**
 * Provisioning with the real npm and python3 of this machine, without network: npm installs a
 * dependency vendored in the package (`file:`), pip gets an empty requirements file, or one
 * that cannot resolve with `--no-index`.
 */
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DeployError } from "../../src/core/errors.ts";
import { planProvisioning, provision } from "../../src/packages/provision.ts";
import { isProcessAlive } from "../../src/platform/proc-info.ts";
import { waitForLogLine } from "../platform/helpers.ts";
import { packageToml, type TarEntry, tarGz } from "./archives.ts";
import { createPackageHarness, EMPTY_TREE, type PackageHarness } from "./harness.ts";

let h: PackageHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** A tiny HTTP agent in Node that needs its npm dependency, answering /status. */
const NODE_AGENT = `
const http = require("node:http");
const greeting = require("greeting");
http.createServer((req, res) => {
  res.writeHead(req.url === "/status" ? 200 : 404, { "content-type": "application/json" });
  res.end(JSON.stringify({ status: "ok", greeting }));
}).listen(Number(process.env.PORT), "127.0.0.1");
`;

const LOCKFILE = JSON.stringify({
  name: "npm-agent",
  version: "1.0.0",
  lockfileVersion: 3,
  requires: true,
  packages: {
    "": { name: "npm-agent", version: "1.0.0", dependencies: { greeting: "file:vendor/greeting" } },
    "node_modules/greeting": { resolved: "vendor/greeting", link: true },
    "vendor/greeting": { version: "1.0.0" },
  },
});

function npmPackage(): Buffer {
  const entries: TarEntry[] = [
    { name: "npm-agent/", type: "Directory" },
    {
      name: "npm-agent/agent.toml",
      content: packageToml(undefined, [process.execPath, "{dir}/main.cjs"]),
    },
    { name: "npm-agent/main.cjs", content: NODE_AGENT },
    {
      name: "npm-agent/package.json",
      content: JSON.stringify({
        name: "npm-agent",
        version: "1.0.0",
        dependencies: { greeting: "file:vendor/greeting" },
        // Would run if npm ran scripts: it must not.
        scripts: { postinstall: "node -e \"require('fs').writeFileSync('SCRIPT_RAN','')\"" },
      }),
    },
    { name: "npm-agent/package-lock.json", content: LOCKFILE },
    {
      name: "npm-agent/vendor/greeting/package.json",
      content: JSON.stringify({ name: "greeting", version: "1.0.0", main: "index.js" }),
    },
    { name: "npm-agent/vendor/greeting/index.js", content: 'module.exports = "hello";\n' },
  ];
  return tarGz(entries);
}

/** A tiny HTTP agent in Python that reports which interpreter runs it. */
const PYTHON_AGENT = `
import http.server, json, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "prefix": sys.prefix}).encode()
        self.send_response(200 if self.path == "/status" else 404)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
with open(os.path.join(os.environ["ATOLL_AGENT_CONFIG"] + ".prefix"), "w") as f:
    f.write(sys.prefix)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
`;

function pythonPackage(requirements: string): Buffer {
  return tarGz([
    { name: "py-agent/", type: "Directory" },
    {
      name: "py-agent/agent.toml",
      content: packageToml(undefined, ["python", "{dir}/agent.py"]),
    },
    { name: "py-agent/agent.py", content: PYTHON_AGENT },
    { name: "py-agent/requirements.txt", content: requirements },
  ]);
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

describe("provisioning with npm", () => {
  it("runs npm ci --omit=dev without scripts, and the agent finds its dependency", async () => {
    h = await createPackageHarness();
    const { status } = await h.install(npmPackage(), { start: true });
    expect(status.state).toBe("RUNNING");
    expect(status.installedPackage?.provisioned).toEqual(["npm"]);
    const dir = path.dirname(status.configPath);
    expect(await exists(path.join(dir, "node_modules/greeting/index.js"))).toBe(true);
    expect(await exists(path.join(dir, "SCRIPT_RAN"))).toBe(false);
    const reply = await fetch(`http://127.0.0.1:${status.port}/status`);
    expect(await reply.json()).toEqual({ status: "ok", greeting: "hello" });
    const log = await readFile(status.logPath, "utf8");
    expect(log).toContain(
      "[atoll-deploy] provisioning npm-agent: npm ci --omit=dev --ignore-scripts",
    );
  });
});

describe("provisioning a virtual environment", () => {
  it("makes .venv from requirements.txt and starts `python` with the venv's interpreter", async () => {
    h = await createPackageHarness();
    const { status } = await h.install(pythonPackage("# nothing needed\n"), { start: true });
    expect(status.state).toBe("RUNNING");
    expect(status.installedPackage?.provisioned).toEqual(["venv"]);
    const dir = path.dirname(status.configPath);
    expect(await exists(path.join(dir, ".venv/bin/python"))).toBe(true);
    expect(await readFile(`${status.configPath}.prefix`, "utf8")).toBe(path.join(dir, ".venv"));
  }, 60_000);

  it("answers PROVISIONING_FAILED with pip's last lines and leaves nothing behind", async () => {
    h = await createPackageHarness();
    const archive = pythonPackage("--no-index\natoll-no-such-package==9.9.9\n");
    const error = await h.install(archive).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DeployError);
    expect((error as DeployError).code).toBe("PROVISIONING_FAILED");
    expect((error as DeployError).message).toMatch(/pip install .*exit code 1; last output:/s);
    expect((error as DeployError).message).toMatch(/atoll-no-such-package/);
    expect(await h.tree()).toEqual(EMPTY_TREE);
    // The output is in the agent's log too (written there by the output keeper).
    await waitForLogLine(
      path.join(h.stateDir, "logs", "py-agent.log"),
      /provisioning py-agent failed/,
    );
  }, 60_000);
});

describe("provision", () => {
  it("plans npm only for dependencies, and venv for a requirements.txt", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-plan-"));
    try {
      expect(await planProvisioning(dir)).toEqual([]);
      await writeFile(
        path.join(dir, "package.json"),
        JSON.stringify({ devDependencies: { x: "1" } }),
      );
      expect(await planProvisioning(dir)).toEqual([]);
      await writeFile(path.join(dir, "package.json"), JSON.stringify({ dependencies: { x: "1" } }));
      await writeFile(path.join(dir, "requirements.txt"), "");
      expect(await planProvisioning(dir)).toEqual(["npm", "venv"]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("ends a step that outlives the time limit, its whole process group", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-slow-"));
    try {
      // A stand-in for npm that never finishes, with a child of its own.
      const slow = path.join(dir, "slow-npm");
      await writeFile(
        slow,
        `#!${process.execPath}\nconst c = require("node:child_process").spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "inherit" });\nconsole.error("child " + c.pid);\nconsole.log("working...");\nsetInterval(() => {}, 1000);\n`,
      );
      await chmod(slow, 0o755);
      const started = Date.now();
      const error = await provision(["npm"], {
        dir,
        name: "slow",
        logPath: path.join(dir, "slow.log"),
        env: process.env,
        timeoutMs: 500,
        signal: new AbortController().signal,
        npm: slow,
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((error as DeployError).code).toBe("PROVISIONING_FAILED");
      expect((error as DeployError).message).toMatch(
        /did not finish within the time limit of 0.5 s; last output:\n(child \d+\n)?working\.\.\./,
      );
      expect(Date.now() - started).toBeLessThan(10_000);
      const child = Number(
        /child (\d+)/.exec(await readFile(path.join(dir, "slow.log"), "utf8"))?.[1],
      );
      expect(child).toBeGreaterThan(0);
      expect(isProcessAlive(child)).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
