import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  AgentSchema,
  AgentSource,
  AgentState,
  InstalledPackageSchema,
} from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { InstallOutcome } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { DeployError } from "../../src/core/errors.ts";
import {
  Children,
  cannedAgents,
  closedPort,
  type FakeServer,
  fakeHandlers,
  runCli,
  startFakeServer,
} from "./helpers.ts";

const children = new Children();
const servers: FakeServer[] = [];
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "atoll-cli-install-"));
});
afterEach(async () => {
  await children.killAll();
  for (const s of servers.splice(0)) s.server.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

interface Received {
  sha256: string;
  sizeBytes: bigint;
  force: boolean;
  start: boolean;
  bytes: Buffer;
}

/** A fake server whose InstallAgent keeps what it received and answers `outcome`. */
async function fakeInstaller(
  outcome: InstallOutcome = InstallOutcome.INSTALLED,
  state: AgentState = AgentState.DISCOVERED,
): Promise<{ server: FakeServer; received: Received[] }> {
  const received: Received[] = [];
  const server = await startFakeServer(
    fakeHandlers(cannedAgents(), {
      installAgent: async (requests) => {
        const got: Received = {
          sha256: "",
          sizeBytes: 0n,
          force: false,
          start: false,
          bytes: Buffer.alloc(0),
        };
        const chunks: Buffer[] = [];
        for await (const request of requests) {
          if (request.payload.case === "header") Object.assign(got, request.payload.value);
          if (request.payload.case === "chunk") chunks.push(Buffer.from(request.payload.value));
        }
        got.bytes = Buffer.concat(chunks);
        received.push(got);
        return {
          outcome,
          agent: create(AgentSchema, {
            name: "greeter",
            state,
            port: state === AgentState.RUNNING ? 8100 : 0,
            source: AgentSource.PACKAGE,
            installedPackage: create(InstalledPackageSchema, { sha256: got.sha256 }),
          }),
        };
      },
    }),
  );
  servers.push(server);
  return { server, received };
}

async function agentDir(): Promise<string> {
  const agent = path.join(dir, "greeter");
  await mkdir(agent, { recursive: true });
  await writeFile(path.join(agent, "agent.toml"), '[agent]\nname = "greeter"\n');
  return agent;
}

describe("install", () => {
  it("uploads the packed directory with its checksum and size, and prints the SPEC line", async () => {
    const { server, received } = await fakeInstaller();
    const result = await runCli(children, [
      "install",
      await agentDir(),
      "--start",
      "--server",
      server.address,
    ]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const [got] = received;
    if (got === undefined) throw new Error("nothing received");
    expect(got.sha256).toBe(createHash("sha256").update(got.bytes).digest("hex"));
    expect(got.sizeBytes).toBe(BigInt(got.bytes.length));
    expect(got.start).toBe(true);
    expect(got.force).toBe(false);
    expect(result.stdout).toBe(`✓ Agent greeter installed (sha256 ${got.sha256.slice(0, 12)}…)\n`);
  });

  it("sends an archive as it is, and prints the response as JSON", async () => {
    const { server, received } = await fakeInstaller(InstallOutcome.ALREADY_INSTALLED);
    const archive = path.join(dir, "greeter.zip");
    await writeFile(archive, Buffer.from("PK\u0003\u0004 not really a zip"));
    const result = await runCli(children, [
      "install",
      archive,
      "--force",
      "--json",
      "--server",
      server.address,
    ]);
    expect(result.code).toBe(0);
    expect(received[0]?.bytes).toEqual(await readFile(archive));
    expect(received[0]?.force).toBe(true);
    expect(JSON.parse(result.stdout)).toMatchObject({
      outcome: "INSTALL_OUTCOME_ALREADY_INSTALLED",
      agent: { name: "greeter", source: "AGENT_SOURCE_PACKAGE" },
    });
  });

  it("notes that a replaced running agent keeps its previous package", async () => {
    const { server } = await fakeInstaller(InstallOutcome.REPLACED, AgentState.RUNNING);
    const result = await runCli(children, [
      "install",
      await agentDir(),
      "--force",
      "--server",
      server.address,
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /^✓ Agent greeter replaced \(sha256 [0-9a-f]{12}…\) and deployed on port 8100\n$/,
    );
    expect(result.stderr).toBe(
      "! Agent greeter: keeps running its previous package until it is restarted\n",
    );
  });

  it("exits 1 with the server's reason when it refuses the package", async () => {
    const server = await startFakeServer(
      fakeHandlers(cannedAgents(), {
        installAgent: async () => {
          throw new DeployError(
            "PACKAGE_INVALID",
            'package refused: entry "x/../y" leaves the package with ".."',
          );
        },
      }),
    );
    servers.push(server);
    const result = await runCli(children, [
      "install",
      await agentDir(),
      "--server",
      server.address,
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      '✗ Agent greeter: package refused: entry "x/../y" leaves the package with ".." (PACKAGE_INVALID)\n',
    );
  });

  it("exits 2 for a path that is not a package and 3 when the server is unreachable", async () => {
    const empty = path.join(dir, "empty");
    await mkdir(empty);
    const notPackage = await runCli(children, ["install", empty, "--server", "127.0.0.1:1"]);
    expect(notPackage.code).toBe(2);
    expect(notPackage.stderr).toMatch(/holds no agent\.toml or agent\.json/);
    const missing = await runCli(children, [
      "install",
      path.join(dir, "nope"),
      "--server",
      "127.0.0.1:1",
    ]);
    expect(missing.code).toBe(2);
    const port = await closedPort();
    const down = await runCli(children, [
      "install",
      await agentDir(),
      "--server",
      `127.0.0.1:${port}`,
    ]);
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(/cannot reach atoll-deploy/);
  });
});

describe("remove", () => {
  it("prints the SPEC line and passes the server's refusal on", async () => {
    const server = await startFakeServer(
      fakeHandlers(cannedAgents(), {
        removeAgent: async (request) => {
          if (request.name === "beta") {
            throw new DeployError(
              "AGENT_NOT_INSTALLED",
              "agent beta comes from the agents directory",
            );
          }
          return { agent: create(AgentSchema, { name: request.name, state: AgentState.STOPPED }) };
        },
      }),
    );
    servers.push(server);
    const removed = await runCli(children, ["remove", "alpha", "--server", server.address]);
    expect(removed).toMatchObject({ code: 0, stdout: "✓ Agent alpha removed\n", stderr: "" });
    const refused = await runCli(children, ["remove", "beta", "--server", server.address]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      "✗ Agent beta: agent beta comes from the agents directory (AGENT_NOT_INSTALLED)\n",
    );
  });
});
