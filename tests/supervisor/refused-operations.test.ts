/**
 * A Deploy or Restart the server refuses changes nothing durable (issue 12): the agent is not
 * recorded as desired, so the next daemon does not start what the user was told could not start.
 */
import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { isDeployError } from "../../src/core/errors.ts";
import { createHarness, faultAgentToml, type Harness } from "./harness.ts";

let harness: Harness | undefined;
const servers: Server[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise((r) => server.close(r));
  await harness?.close();
  harness = undefined;
});

async function refusal(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the operation to be refused");
}

/** Holds a free port on 127.0.0.1 the way a process outside the server would; returns it. */
async function holdPort(): Promise<number> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

const INVALID_TOML = '[agent]\nname = "b"\n[deployment]\nport = "x"\n';

describe("refused operations", () => {
  it.each([
    ["deploy", "MAX_AGENTS_REACHED"],
    ["restart", "MAX_AGENTS_REACHED"],
    ["deploy", "NO_FREE_PORT"],
    ["restart", "NO_FREE_PORT"],
    ["deploy", "PORT_UNAVAILABLE"],
    ["restart", "PORT_UNAVAILABLE"],
    ["deploy", "AGENT_CONFIG_INVALID"],
    ["restart", "AGENT_CONFIG_INVALID"],
  ] as const)("a %s refused with %s records nothing durable", async (operation, code) => {
    const heldPort = code === "PORT_UNAVAILABLE" ? await holdPort() : 0;
    harness = await createHarness(
      {
        a: faultAgentToml("a"),
        b:
          code === "AGENT_CONFIG_INVALID"
            ? INVALID_TOML
            : faultAgentToml("b", {
                deployment: { port: heldPort },
              }),
      },
      {
        maxAgents: code === "MAX_AGENTS_REACHED" ? 1 : 10,
        ports: code === "NO_FREE_PORT" ? 1 : 31,
      },
    );
    const { registry } = harness;
    await registry.deploy("a");
    const before = registry.status("b");
    const error = await refusal(registry[operation]("b"));
    expect(isDeployError(error, code)).toBe(true);
    expect(registry.persistentState().b).toMatchObject({ desired: "stopped", port: 0, pid: 0 });
    expect(registry.status("b")).toMatchObject({ state: before.state, port: 0, pid: 0 });
    expect(registry.status("a")).toMatchObject({ state: "RUNNING" });
  });

  it("refuses a restart whose edited definition is invalid and keeps the agent running", async () => {
    harness = await createHarness({ a: faultAgentToml("a") });
    const { registry } = harness;
    const running = await registry.deploy("a");
    registry.applyDiscovery([
      {
        kind: "invalid",
        name: "a",
        configPath: running.configPath,
        dir: harness.agentsDir,
        message: `${running.configPath}: deployment.port: must be an integer`,
        warnings: [],
      },
    ]);
    const error = await refusal(registry.restart("a"));
    expect(isDeployError(error, "AGENT_CONFIG_INVALID")).toBe(true);
    expect(registry.status("a")).toMatchObject({ state: "RUNNING", pid: running.pid });
    expect(registry.persistentState().a).toMatchObject({ desired: "running", pid: running.pid });
  });
});
