/**
 * The CLI against the real daemon (`atoll-deploy serve` as a child process) supervising the
 * fault-agent fixture: the whole path from argv to a process on a leased port and back.
 */
import { describe, expect, it } from "vitest";
import { startDaemon, workspace } from "../e2e/daemon.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { runCli, spawnCli } from "./helpers.ts";
import { realDaemonScope } from "./real-daemon-scope.ts";

const { children, daemons, cleanups, pids } = realDaemonScope();

/** A port range of this test file, away from the e2e tests' ranges. */
const basePort = 29_000 + (process.pid % 40) * 25;

describe("atoll-deploy client against the real daemon", () => {
  // About ten processes start one after another: allow for a loaded machine.
  it("deploys, reports, watches and undeploys an agent", { timeout: 90_000 }, async () => {
    const ws = await workspace({
      good: { file: "agent.toml", text: faultAgentToml("good") },
      bad: {
        file: "agent.toml",
        text: faultAgentToml("bad", { env: { FAULT: "crash-at-start" } }),
      },
    });
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

    const watch = spawnCli(children, ["watch", "good", ...server]);
    await watch.waitFor((p) => p.stdout.includes("good DISCOVERED/UNKNOWN"), "the snapshot");

    const deployed = await runCli(children, ["deploy", "good", ...server]);
    expect(deployed.stderr).toBe("");
    expect(deployed.code).toBe(0);
    const port = Number(/^✓ Agent good deployed on port (\d+)\n$/.exec(deployed.stdout)?.[1]);
    expect(port).toBeGreaterThanOrEqual(basePort);

    const status = await runCli(children, ["status", "good", "--json", ...server]);
    const agent = (JSON.parse(status.stdout) as { agent: { pid: number; port: number } }).agent;
    pids.add(agent.pid);
    expect(agent).toMatchObject({ state: "AGENT_STATE_RUNNING", port });

    const list = await runCli(children, ["list", ...server]);
    expect(list.stdout).toMatch(/^Agent Name +Status +Port +PID +Health +Restarts\n/);
    expect(list.stdout).toMatch(
      new RegExp(`\\ngood +RUNNING +${port} +${agent.pid} +HEALTHY +0\\n`),
    );
    expect(list.stdout).toMatch(/\nbad +DISCOVERED +- +- +UNKNOWN +0\n/);

    const logs = await runCli(children, ["logs", "good", "-n", "5", ...server]);
    expect(logs.stdout).toContain(`READY ${port}`);

    const failed = await runCli(children, ["deploy", "bad", ...server]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^✗ Agent bad: .*\(AGENT_EXITED_DURING_START\)\n$/);

    const stopped = await runCli(children, ["undeploy", "good", ...server]);
    expect(stopped).toMatchObject({ code: 0, stdout: "✓ Agent good stopped\n" });

    await watch.waitFor((p) => p.stdout.includes("good STOPPED/"), "the stop in the watch");
    watch.child.kill("SIGINT");
    const watched = await watch.exited;
    expect(watched.code).toBe(0);
    const states = watched.stdout
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => l.split(" ")[2]);
    expect(states).toEqual([
      "DISCOVERED/UNKNOWN",
      "STARTING/UNKNOWN",
      "RUNNING/HEALTHY",
      "STOPPING/HEALTHY",
      "STOPPED/UNKNOWN",
    ]);
  });
});
