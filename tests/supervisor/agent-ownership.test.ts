/**
 * The ownership proof (issue 13): tokens from the state dir's secret, the environment agents get,
 * and one survey of /proc telling proven processes from mere claims.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import type { AgentDefinition } from "../../src/config/agent-definition.ts";
import { buildAgentEnv } from "../../src/supervisor/agent-command.ts";
import {
  AgentOwnership,
  LEGACY_MARKER_ENV,
  newSecret,
  SUPERVISOR_TOKEN_ENV,
} from "../../src/supervisor/agent-ownership.ts";
import { waitUntil } from "../platform/helpers.ts";

const started: ChildProcess[] = [];

afterEach(async () => {
  for (const child of started.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  }
});

function sleeper(env: Record<string, string>, asNobody = false): ChildProcess {
  const argv = asNobody
    ? ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "sleep", "30"]
    : ["sleep", "30"];
  const child = spawn(argv[0] ?? "", argv.slice(1), {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: "ignore",
  });
  started.push(child);
  return child;
}

describe("AgentOwnership", () => {
  it("derives a token per agent and a cgroup name from the secret, neither guessable without it", () => {
    const secret = newSecret();
    const one = new AgentOwnership(secret);
    const again = new AgentOwnership(secret);
    const other = new AgentOwnership(newSecret());
    expect(one.tokenFor("a")).toBe(again.tokenFor("a"));
    expect(one.tokenFor("a")).not.toBe(one.tokenFor("b"));
    expect(one.tokenFor("a")).not.toBe(other.tokenFor("a"));
    expect(one.tokenFor("a")).not.toContain(secret);
    expect(one.cgroupBaseName).toMatch(/^atoll-deploy-[0-9a-f]{16}$/);
    expect(one.cgroupBaseName).toBe(again.cgroupBaseName);
    expect(() => new AgentOwnership("short")).toThrow(RangeError);
  });

  it("gives an agent its token, never an inherited one nor the old marker", () => {
    const ownership = new AgentOwnership(newSecret());
    const definition = {
      name: "a",
      configPath: "/agents/a/agent.toml",
      dir: "/agents/a",
      deployment: { env: { [SUPERVISOR_TOKEN_ENV]: "forged", EXTRA: "1" } },
    } as unknown as AgentDefinition;
    const env = buildAgentEnv(
      definition,
      8100,
      "127.0.0.1",
      { [SUPERVISOR_TOKEN_ENV]: "inherited", [LEGACY_MARKER_ENV]: "/state", PATH: "/bin" },
      ownership,
    );
    expect(env[SUPERVISOR_TOKEN_ENV]).toBe(ownership.tokenFor("a"));
    expect(env[LEGACY_MARKER_ENV]).toBeUndefined();
    expect(env).toMatchObject({ EXTRA: "1", PATH: "/bin", ATOLL_AGENT_NAME: "a" });
    const without = buildAgentEnv(definition, 8100, "127.0.0.1", { [SUPERVISOR_TOKEN_ENV]: "x" });
    expect(without[SUPERVISOR_TOKEN_ENV]).toBeUndefined();
  });

  it.skipIf((process.getuid?.() ?? 1) !== 0)(
    "proves a process by the daemon's user and the agent's token, and reports the claims it cannot prove",
    async () => {
      const ownership = new AgentOwnership(newSecret(), { stateDir: "/srv/state-of-this-test" });
      const token = ownership.tokenFor("a");
      // Its ATOLL_AGENT_NAME was changed by the agent (a sub-agent): the token still says whose.
      const ours = sleeper({ [SUPERVISOR_TOKEN_ENV]: token, ATOLL_AGENT_NAME: "a-helper" });
      const foreign = sleeper({ [SUPERVISOR_TOKEN_ENV]: token, ATOLL_AGENT_NAME: "a" }, true);
      const legacy = sleeper(
        { [LEGACY_MARKER_ENV]: "/srv/state-of-this-test", ATOLL_AGENT_NAME: "a" },
        true,
      );
      const elsewhere = sleeper({
        [SUPERVISOR_TOKEN_ENV]: new AgentOwnership(newSecret()).tokenFor("a"),
        ATOLL_AGENT_NAME: "a",
      });
      const pids = [ours, foreign, legacy, elsewhere].map((c) => c.pid ?? 0);
      await waitUntil(
        () =>
          [foreign, legacy].every((c) => {
            try {
              return /^Uid:\s+65534/m.test(readFileSync(`/proc/${c.pid}/status`, "utf8"));
            } catch {
              return false;
            }
          }),
        "the foreign processes run as nobody",
      );
      const survey = ownership.survey(["a"]);
      expect(survey.proven.get("a")?.map((p) => p.stat.pid)).toEqual([ours.pid]);
      expect(ownership.proves(ours.pid ?? 0, "a")).toBe(true);
      expect(ownership.proves(foreign.pid ?? 0, "a")).toBe(false);
      const claims = survey.unproven.filter((c) => pids.includes(c.pid));
      expect(claims.map((c) => [c.pid, c.why]).sort()).toEqual(
        [
          [foreign.pid, "runs as another user"],
          [
            legacy.pid,
            "an earlier daemon's marker (the state dir's path), without this state dir's token",
          ],
        ].sort(),
      );
      // Another state dir's agent is none of this daemon's business.
      expect(claims.map((c) => c.pid)).not.toContain(elsewhere.pid);
    },
  );
});
