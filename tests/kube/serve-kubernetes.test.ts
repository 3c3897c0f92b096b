/**
 * `atoll-deploy serve --backend kubernetes` end to end: the real daemon (a child process) on the
 * API simulator, driven by the real CLI. The simulator runs in this process.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Children, cliEnv, runCli } from "../cli/helpers.ts";
import { type Daemon, startDaemon, workspace } from "../e2e/daemon.ts";
import { parsePrometheusText, value } from "../http/prometheus.ts";
import { KubeApiSimulator } from "./api-simulator.ts";
import { agentToml } from "./backend-harness.ts";

const children = new Children();
const cleanups: (() => Promise<void>)[] = [];
let daemon: Daemon | undefined;

afterEach(async () => {
  await children.killAll();
  if (daemon !== undefined) expect(await daemon.stop("SIGTERM")).toBe(0);
  daemon = undefined;
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe("serve --backend kubernetes", () => {
  it("serves the same API and CLI for agents on a cluster", { timeout: 60_000 }, async () => {
    const sim = await KubeApiSimulator.start();
    cleanups.push(() => sim.close());
    const ws = await workspace({
      greeter: { file: "agent.toml", text: agentToml("greeter") },
      stays: { file: "agent.toml", text: agentToml("stays", "auto_restart = false") },
    });
    cleanups.push(ws.cleanup);
    const kubeconfig = path.join(ws.dir, "kubeconfig");
    await writeFile(kubeconfig, sim.kubeconfig(), { mode: 0o600 });
    daemon = await startDaemon([
      "--backend",
      "kubernetes",
      "--kubeconfig",
      kubeconfig,
      "--agents-dir",
      ws.agentsDir,
      "--state-dir",
      ws.stateDir,
    ]);
    const server = ["--server", daemon.address];
    const cli = (args: string[]) => runCli(children, [...args, ...server], cliEnv());

    const deployed = await cli(["deploy", "greeter"]);
    expect(deployed).toMatchObject({ code: 0, stdout: "✓ Agent greeter deployed on port 8100\n" });
    const status = await cli(["status", "greeter"]);
    expect(status.stdout).toMatch(/^Agent: +greeter\nStatus: +RUNNING\nPort: +8100\nPID: +-\n/);
    expect(status.stdout).toMatch(/\nInstance: +atoll-greeter-\S+\nHost: +node-a\n/);
    const json = JSON.parse((await cli(["status", "greeter", "--json"])).stdout) as {
      agent: { host: string; instance: string; pid: number };
    };
    expect(json.agent).toMatchObject({ host: "node-a", pid: 0 });
    sim.appendLog(json.agent.instance, "hello from the pod");
    expect((await cli(["logs", "greeter", "-n", "5"])).stdout).toContain("hello from the pod");
    expect((await cli(["list"])).stdout).toMatch(/\ngreeter +RUNNING +8100 +- +HEALTHY +0\n/);

    // The HTTP listener serves this backend too: Connect API and metrics from its events.
    const url = await daemon.httpUrl;
    const listed = await fetch(`${url}/atoll.deployment.v1.DeploymentService/ListAgents`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(
      ((await listed.json()) as { agents: { name: string }[] }).agents.map((a) => a.name),
    ).toEqual(["greeter", "stays"]);
    const families = await parsePrometheusText(await (await fetch(`${url}/metrics`)).text());
    expect(value(families, "atoll_agent_state", { agent: "greeter", state: "running" })).toBe(1);

    const refused = await cli(["deploy", "stays"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/deployment\.auto_restart.*\(AGENT_CONFIG_INVALID\)\n$/);

    expect((await cli(["undeploy", "greeter"])).stdout).toBe("✓ Agent greeter stopped\n");
    expect(sim.object("deployments", "atoll-greeter")?.spec.replicas).toBe(0);
    expect(await cli(["deploy", "greeter"])).toMatchObject({ code: 0 });

    // Stopping the server leaves the agents to the cluster.
    expect(await daemon.stop("SIGTERM")).toBe(0);
    daemon = undefined;
    expect(sim.object("deployments", "atoll-greeter")?.spec.replicas).toBe(1);
    expect(sim.pods()).toHaveLength(1);
  });
});
