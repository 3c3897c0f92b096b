/**
 * A probe answered on the agent's port by another process is not the agent being healthy
 * (issue 13; docs/platform.md, "Health probes"): a foreign server that grabs the port while the
 * agent waits in BACKOFF must never make it RUNNING or HEALTHY, and health is UNKNOWN in BACKOFF.
 */
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { type Daemon, startDaemon, workspace } from "./daemon.ts";

const daemons: Daemon[] = [];
const pids = new Set<number>();
const servers: Server[] = [];
let cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop("SIGTERM");
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
    await once(server, "close");
  }
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  for (const c of cleanups.splice(0)) await c();
  cleanups = [];
  expect(left).toEqual([]);
});

const basePort = 21_000 + (process.pid % 40) * 25;

/** An HTTP server in this test process answering 200 to everything: the impostor. */
async function impostor(port: number): Promise<Server> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"status":"ok","name":"impostor"}');
  });
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  servers.push(server);
  return server;
}

describe("probes and the owner of the port", () => {
  it("never takes a foreign server that grabbed the port during BACKOFF for the agent", async () => {
    const port = basePort + 1;
    const toml = faultAgentToml("a", {
      env: {
        FAULT: "slow-start,crash-after",
        START_DELAY_MS: "1500",
        CRASH_AFTER_MS: "300",
      },
      deployment: { port, restart_delay: 1, start_timeout: 10, max_restarts: 5 },
    });
    const ws = await workspace({ a: { file: "agent.toml", text: toml } });
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
    const deployed = (await daemon.client.deploy({ name: "a" })).agent;
    pids.add(deployed?.pid ?? 0);
    expect(deployed).toMatchObject({ state: AgentState.RUNNING, health: HealthStatus.HEALTHY });

    let grabbed = false;
    let backoffs = 0;
    const seen: string[] = [];
    for await (const event of daemon.client.watchHealth({ names: ["a"] })) {
      const agent = event.agent;
      if (agent === undefined) continue;
      if (agent.pid) pids.add(agent.pid);
      seen.push(`${agent.state}/${agent.health} ${agent.stateReason}: ${agent.healthMessage}`);
      if (agent.state === AgentState.BACKOFF) {
        backoffs += 1;
        // No process is probed in BACKOFF.
        expect(agent).toMatchObject({ health: HealthStatus.UNKNOWN, pid: 0 });
        if (!grabbed) {
          // The crashed agent's port is free: another process takes it before the restart.
          await impostor(port);
          grabbed = true;
        }
      }
      if (grabbed) {
        expect(agent.state, seen.join("\n")).not.toBe(AgentState.RUNNING);
        expect(agent.health, seen.join("\n")).not.toBe(HealthStatus.HEALTHY);
      }
      // The restarted agent cannot bind (EADDRINUSE) and crashes into BACKOFF again.
      if (backoffs >= 2) break;
    }
    // The reason names the holder (this test process, whatever its thread calls itself).
    expect(seen.join("\n")).toContain(
      `port ${port} is held by another process (pid ${process.pid}, `,
    );
    await daemon.client.undeploy({ name: "a" });
  });
});
