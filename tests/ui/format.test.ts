import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { AgentSchema, AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  describeReason,
  formatBytes,
  formatNumber,
  formatRestarts,
  formatUptime,
  stateName,
  summarize,
} from "../../src/ui/format.ts";

const agent = (init: Parameters<typeof create<typeof AgentSchema>>[1]) => create(AgentSchema, init);

describe("the dashboard's formatting", () => {
  it("names every state as SPEC §9's metrics do", () => {
    expect(
      [
        AgentState.DISCOVERED,
        AgentState.STARTING,
        AgentState.RUNNING,
        AgentState.BACKOFF,
        AgentState.STOPPING,
        AgentState.STOPPED,
        AgentState.FAILED,
        AgentState.INVALID,
        AgentState.UNSPECIFIED,
      ].map(stateName),
    ).toEqual([
      "discovered",
      "starting",
      "running",
      "backoff",
      "stopping",
      "stopped",
      "failed",
      "invalid",
      "unknown",
    ]);
  });

  it("counts uptime from the start time while there is a process", () => {
    const start = Date.UTC(2026, 0, 1);
    const running = agent({ pid: 5, startTime: timestampFromMs(start) });
    expect(formatUptime(running, start + 42_000)).toBe("42s");
    expect(formatUptime(running, start + 5 * 60_000 + 3_000)).toBe("5m 03s");
    expect(formatUptime(running, start + 3 * 3_600_000 + 7 * 60_000)).toBe("3h 07m");
    expect(formatUptime(running, start + 2 * 86_400_000 + 4 * 3_600_000)).toBe("2d 4h");
    expect(formatUptime(agent({ pid: 0, startTime: timestampFromMs(start) }), start)).toBe("—");
  });

  it("writes sizes in binary units and absent numbers as a dash", () => {
    expect(formatBytes(0n)).toBe("—");
    expect(formatBytes(512n)).toBe("512 B");
    expect(formatBytes(12_900_000n)).toBe("12 MiB");
    expect(formatBytes(5_000_000n)).toBe("4.8 MiB");
    expect(formatNumber(0)).toBe("—");
    expect(formatNumber(8100)).toBe("8100");
    expect(formatRestarts(agent({ restartCount: 1, maxRestarts: 3 }))).toBe("1 / 3");
  });

  it("gives the reason of an agent that is not running and the probe of an unhealthy one", () => {
    expect(
      describeReason(
        agent({
          state: AgentState.INVALID,
          stateReason: "AGENT_CONFIG_INVALID",
          stateMessage: "/a/agent.toml: deployment.port: must be an integer",
        }),
      ),
    ).toBe("AGENT_CONFIG_INVALID: /a/agent.toml: deployment.port: must be an integer");
    expect(
      describeReason(
        agent({
          state: AgentState.RUNNING,
          health: HealthStatus.UNHEALTHY,
          healthMessage: "HTTP 503",
        }),
      ),
    ).toBe("probe: HTTP 503");
    expect(describeReason(agent({ state: AgentState.RUNNING, stateReason: "STARTED" }))).toBe("");
  });

  it("summarizes the fleet by state", () => {
    expect(summarize([])).toBe("no agents");
    expect(
      summarize([
        agent({ state: AgentState.RUNNING }),
        agent({ state: AgentState.FAILED }),
        agent({ state: AgentState.RUNNING }),
      ]),
    ).toBe("3 agents: 2 running · 1 failed");
  });
});
