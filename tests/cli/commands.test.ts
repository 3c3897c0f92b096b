import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DeployError } from "../../src/core/errors.ts";
import {
  aborted,
  Children,
  cannedAgents,
  closedPort,
  type FakeServer,
  fakeHandlers,
  runCli,
  spawnCli,
  startFakeServer,
} from "./helpers.ts";

const children = new Children();
const servers: FakeServer[] = [];
const dirs: string[] = [];

afterEach(async () => {
  await children.killAll();
  for (const s of servers.splice(0)) s.server.forceShutdown();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function fake(overrides: Parameters<typeof fakeHandlers>[1] = {}): Promise<FakeServer> {
  const server = await startFakeServer(fakeHandlers(cannedAgents(), overrides));
  servers.push(server);
  return server;
}

describe("agent operations", () => {
  it("deploys, restarts and undeploys with the SPEC lines on stdout", async () => {
    const { address } = await fake();
    const deployed = await runCli(children, ["deploy", "alpha", "--server", address]);
    expect(deployed).toMatchObject({
      code: 0,
      stdout: "✓ Agent alpha deployed on port 8100\n",
      stderr: "",
    });
    const restarted = await runCli(children, ["--server", address, "restart", "alpha"]);
    expect(restarted).toMatchObject({ code: 0, stdout: "✓ Agent alpha restarted on port 8100\n" });
    const stopped = await runCli(children, ["undeploy", "alpha", "--server", address]);
    expect(stopped).toMatchObject({ code: 0, stdout: "✓ Agent alpha stopped\n", stderr: "" });
  });

  it("prints the response as proto JSON with --json", async () => {
    const { address } = await fake();
    const result = await runCli(children, ["deploy", "alpha", "--json", "--server", address]);
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as { agent: Record<string, unknown> };
    expect(json.agent).toMatchObject({
      name: "alpha",
      state: "AGENT_STATE_RUNNING",
      health: "HEALTH_STATUS_HEALTHY",
      port: 8100,
      pid: 1234,
      restartCount: 0,
    });
  });

  it("names the agent and the reason of a refusal on stderr, exit 1", async () => {
    const { address } = await fake();
    const missing = await runCli(children, ["deploy", "nope", "--server", address]);
    expect(missing).toMatchObject({
      code: 1,
      stdout: "",
      stderr: "✗ Agent nope: agent nope not found (AGENT_NOT_FOUND)\n",
    });
    const invalid = await runCli(children, ["deploy", "broken", "--server", address]);
    expect(invalid).toMatchObject({
      code: 1,
      stderr:
        "✗ Agent broken: agent.toml: deployment.port: expected an integer (AGENT_CONFIG_INVALID)\n",
    });
  });

  it("reports a failed start with the server's reason", async () => {
    const { address } = await fake({
      deploy: async (request) => {
        throw new DeployError(
          "AGENT_EXITED_DURING_START",
          `agent ${request.name} exited during start (exit code 3)`,
        );
      },
    });
    const result = await runCli(children, ["deploy", "alpha", "--server", address]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      "✗ Agent alpha: agent alpha exited during start (exit code 3) (AGENT_EXITED_DURING_START)\n",
    );
  });

  it("draws no progress indicator when stderr is not a terminal", async () => {
    const { address } = await fake({
      deploy: async (request) => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        return { agent: cannedAgents().get("beta") ?? { name: request.name } };
      },
    });
    const result = await runCli(children, ["deploy", "beta", "--server", address]);
    expect(result).toMatchObject({ code: 0, stderr: "" });
  });

  it("cancels a waiting deploy on SIGINT with status 130", async () => {
    let cancelled: Promise<void> | undefined;
    const { address } = await fake({
      deploy: async (_request, context) => {
        cancelled = aborted(context.signal);
        await cancelled;
        throw new Error("cancelled");
      },
    });
    const cli = spawnCli(children, ["deploy", "alpha", "--server", address]);
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (cancelled !== undefined) {
          clearInterval(poll);
          resolve();
        }
      }, 10);
    });
    cli.child.kill("SIGINT");
    const result = await cli.exited;
    await cancelled;
    expect(result.code).toBe(130);
    expect(result.stderr).toContain("✗ Agent alpha: interrupted");
  });
});

describe("status and list", () => {
  it("prints the status block", async () => {
    const { address } = await fake();
    const result = await runCli(children, ["status", "broken", "--server", address]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Agent: +broken\nStatus: +INVALID\nPort: +-\nPID: +-\n/);
    for (const label of ["Started:", "Health:", "Restarts:", "Config:"]) {
      expect(result.stdout).toContain(label);
    }
    expect(result.stdout).toContain(
      "Reason:     CONFIG_INVALID: agent.toml: deployment.port: expected an integer\n",
    );
  });

  it("prints the GetStatus response as JSON", async () => {
    const { address } = await fake();
    const result = await runCli(children, ["status", "beta", "--json", "--server", address]);
    expect(JSON.parse(result.stdout)).toMatchObject({
      agent: { name: "beta", state: "AGENT_STATE_RUNNING", port: 8101, pid: 4242 },
    });
  });

  it("prints the table of agents", async () => {
    const { address } = await fake();
    const result = await runCli(children, ["list", "--server", address]);
    expect(result).toMatchObject({
      code: 0,
      stderr: "",
      stdout: [
        "Agent Name  Status      Port  PID   Health   Restarts",
        "alpha       DISCOVERED  -     -     UNKNOWN  0",
        "beta        RUNNING     8101  4242  HEALTHY  1",
        "broken      INVALID     -     -     UNKNOWN  0",
        "",
      ].join("\n"),
    });
  });

  it("prints ListAgents as JSON with every agent", async () => {
    const { address } = await fake();
    const result = await runCli(children, ["list", "--json", "--server", address]);
    const json = JSON.parse(result.stdout) as { agents: { name: string; state: string }[] };
    expect(json.agents.map((a) => [a.name, a.state])).toEqual([
      ["alpha", "AGENT_STATE_DISCOVERED"],
      ["beta", "AGENT_STATE_RUNNING"],
      ["broken", "AGENT_STATE_INVALID"],
    ]);
  });

  it("takes the server address from ATOLL_DEPLOY_SERVER", async () => {
    const { address } = await fake();
    const env = { ...process.env, NO_COLOR: "1", ATOLL_DEPLOY_SERVER: address };
    const result = await runCli(children, ["list"], env);
    expect(result.code).toBe(0);
  });
});

describe("logs", () => {
  it("prints the tail, then follows until interrupted", async () => {
    const requests: { tailLines: number; follow: boolean }[] = [];
    const { address } = await fake({
      streamLogs: async function* (request, context) {
        requests.push({ tailLines: request.tailLines, follow: request.follow });
        yield { lines: ["first", "second"] };
        if (!request.follow) return;
        yield { lines: ["third"] };
        await aborted(context.signal);
      },
    });
    const tail = await runCli(children, ["logs", "beta", "-n", "2", "--server", address]);
    expect(tail).toMatchObject({ code: 0, stdout: "first\nsecond\n" });
    const json = await runCli(children, ["logs", "beta", "--json", "--server", address]);
    expect(json.stdout).toBe('{"line":"first"}\n{"line":"second"}\n');

    const follow = spawnCli(children, ["logs", "beta", "-f", "--server", address]);
    await follow.waitFor((p) => p.stdout.includes("third\n"));
    follow.child.kill("SIGINT");
    expect(await follow.exited).toMatchObject({ code: 0, stdout: "first\nsecond\nthird\n" });
    expect(requests).toEqual([
      { tailLines: 2, follow: false },
      { tailLines: 100, follow: false },
      { tailLines: 100, follow: true },
    ]);
  });
});

describe("connection", () => {
  it("exits 3 naming the address when nothing listens", async () => {
    const port = await closedPort();
    for (const args of [["list"], ["deploy", "alpha"], ["status", "alpha", "--json"], ["watch"]]) {
      const result = await runCli(children, [...args, "--server", `127.0.0.1:${port}`]);
      expect(result.code).toBe(3);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(
        new RegExp(`^✗ cannot reach atoll-deploy at 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`),
      );
    }
  });

  it("sends the token file as a bearer token", async () => {
    const server = await fake();
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-cli-"));
    dirs.push(dir);
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, "s3cret\n");
    const result = await runCli(children, [
      "status",
      "beta",
      "--token-file",
      tokenFile,
      "--server",
      server.address,
    ]);
    expect(result.code).toBe(0);
    expect(server.authorizations).toEqual(["Bearer s3cret"]);
    const missing = await runCli(children, [
      "list",
      "--token-file",
      path.join(dir, "absent"),
      "--server",
      server.address,
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("cannot read token file");
  });

  it("reports UNAUTHENTICATED as a refusal", async () => {
    const { address } = await fake({
      listAgents: async () => {
        throw new DeployError(
          "UNAUTHENTICATED",
          "missing bearer token in the authorization header",
        );
      },
    });
    const result = await runCli(children, ["list", "--server", address]);
    expect(result).toMatchObject({
      code: 1,
      stderr: "✗ missing bearer token in the authorization header (UNAUTHENTICATED)\n",
    });
  });
});

describe("usage", () => {
  it.each([
    [["deploy"]],
    [["frobnicate"]],
    [["list", "--bogus"]],
    [["logs", "a", "-n", "-3"]],
    [[]],
  ])("exits 2 for %j without contacting a server", async (args) => {
    const result = await runCli(children, [...args, "--server", "127.0.0.1:1"]);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^atoll-deploy: .+\nusage: atoll-deploy/);
  });

  it("prints help and version on stdout", async () => {
    const help = await runCli(children, ["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: atoll-deploy [options] <command>");
    const deployHelp = await runCli(children, ["deploy", "--help"]);
    expect(deployHelp.stdout).toContain("usage: atoll-deploy deploy <name>");
    const version = await runCli(children, ["--version"]);
    expect(version).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+\n$/) });
  });
});
