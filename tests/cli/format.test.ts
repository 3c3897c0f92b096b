import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  AgentState,
  ExitInfoSchema,
  HealthStatus,
} from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  GetStatusResponseSchema,
  WatchEventType,
  WatchHealthResponseSchema,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import {
  deployedLine,
  failureLine,
  formatAgentTable,
  formatDuration,
  formatReason,
  formatStatus,
  formatWatchEvent,
  healthName,
  messageJson,
  restartedLine,
  stateName,
  stoppedLine,
} from "../../src/cli/format.ts";
import { COLOR_STYLE, colorEnabled, stripAnsi } from "../../src/cli/style.ts";
import { agent, cannedAgents, T0_MS } from "./helpers.ts";

describe("names", () => {
  it("shows states and health without their enum prefix", () => {
    expect(stateName(AgentState.RUNNING)).toBe("RUNNING");
    expect(stateName(AgentState.BACKOFF)).toBe("BACKOFF");
    expect(healthName(HealthStatus.UNHEALTHY)).toBe("UNHEALTHY");
    expect(stateName(42)).toBe("STATE_42");
  });

  it("joins reason and message, and leaves either out when empty", () => {
    expect(formatReason({ stateReason: "EXITED", stateMessage: "code 1" })).toBe("EXITED: code 1");
    expect(formatReason({ stateReason: "EXITED", stateMessage: "" })).toBe("EXITED");
    expect(formatReason({ stateReason: "", stateMessage: "" })).toBe("");
  });

  it("prints durations coarsely", () => {
    expect(formatDuration(4_400)).toBe("4s");
    expect(formatDuration(200_000)).toBe("3m20s");
    expect(formatDuration(2 * 3_600_000 + 5 * 60_000)).toBe("2h05m");
  });
});

describe("success lines", () => {
  const running = agent({ name: "greeter", state: AgentState.RUNNING, port: 8100 });

  it("match SPEC §7 exactly", () => {
    expect(deployedLine(running)).toBe("✓ Agent greeter deployed on port 8100");
    expect(stoppedLine(running)).toBe("✓ Agent greeter stopped");
    expect(restartedLine(running)).toBe("✓ Agent greeter restarted on port 8100");
  });

  it("name the agent and the cause in failures", () => {
    expect(failureLine("foo", "agent foo not found (AGENT_NOT_FOUND)")).toBe(
      "✗ Agent foo: agent foo not found (AGENT_NOT_FOUND)",
    );
    expect(failureLine(undefined, "cannot reach atoll-deploy at x:1: refused")).toBe(
      "✗ cannot reach atoll-deploy at x:1: refused",
    );
  });

  it("colour only the mark", () => {
    const line = deployedLine(running, COLOR_STYLE);
    expect(line).toContain("\u001b[32m✓\u001b[39m");
    expect(stripAnsi(line)).toBe("✓ Agent greeter deployed on port 8100");
  });
});

describe("status block", () => {
  it("lists the SPEC fields of a running agent, without a reason line", () => {
    const beta = cannedAgents().get("beta");
    if (beta === undefined) throw new Error("no beta");
    const text = formatStatus(beta, T0_MS + 200_000);
    expect(text).toBe(
      [
        "Agent:      beta",
        "Status:     RUNNING",
        "Port:       8101",
        "PID:        4242",
        "Started:    2025-06-01T12:00:00Z (3m20s ago)",
        "Health:     HEALTHY",
        "Restarts:   1",
        "Config:     /srv/agents/beta/agent.toml",
        "",
      ].join("\n"),
    );
  });

  it("adds the reason and the next retry of an agent in backoff", () => {
    const text = formatStatus(
      agent({
        name: "flaky",
        state: AgentState.BACKOFF,
        health: HealthStatus.UNHEALTHY,
        healthMessage: "HTTP 503",
        port: 8102,
        restartCount: 2,
        stateReason: "EXITED",
        stateMessage: "exited with code 3",
        nextRestartTime: timestampFromMs(T0_MS + 4_000),
        lastExit: create(ExitInfoSchema, { code: 3, time: timestampFromMs(T0_MS) }),
      }),
      T0_MS,
    );
    expect(text).toContain("Status:     BACKOFF\n");
    expect(text).toContain("PID:        -\n");
    expect(text).toContain("Started:    -\n");
    expect(text).toContain("Health:     UNHEALTHY (HTTP 503)\n");
    expect(text).toContain("Reason:     EXITED: exited with code 3\n");
    expect(text).toContain("Next retry: 2025-06-01T12:00:04Z (in 4s)\n");
    expect(text).toContain("Last exit:  exit code 3 at 2025-06-01T12:00:00Z\n");
  });

  it("names the package of an installed agent", () => {
    const text = formatStatus(
      agent({
        name: "greeter",
        installedPackage: { sha256: "ab".repeat(32), installTime: timestampFromMs(T0_MS) },
      }),
      T0_MS,
    );
    expect(text).toContain(
      `Package:    installed 2025-06-01T12:00:00Z, sha256 ${"ab".repeat(32)}\n`,
    );
  });

  it("shows a dash for a stopped agent without a reason", () => {
    const text = formatStatus(agent({ name: "alpha" }), T0_MS);
    expect(text).toContain("Status:     DISCOVERED\n");
    expect(text).toContain("Reason:     -\n");
    expect(text).not.toContain("Next retry");
  });
});

describe("list table", () => {
  it("has the SPEC columns, aligned, with dashes for no port or pid", () => {
    const text = formatAgentTable([...cannedAgents().values()]);
    expect(text).toBe(
      [
        "Agent Name  Status      Port  PID   Health   Restarts",
        "alpha       DISCOVERED  -     -     UNKNOWN  0",
        "beta        RUNNING     8101  4242  HEALTHY  1",
        "broken      INVALID     -     -     UNKNOWN  0",
        "",
      ].join("\n"),
    );
  });

  it("keeps the alignment when coloured", () => {
    const plain = formatAgentTable([...cannedAgents().values()]);
    const coloured = formatAgentTable([...cannedAgents().values()], { style: COLOR_STYLE });
    expect(coloured).not.toBe(plain);
    expect(stripAnsi(coloured)).toBe(plain);
  });

  it("prints only the header when there are no agents", () => {
    expect(formatAgentTable([])).toBe("Agent Name  Status  Port  PID  Health  Restarts\n");
  });
});

describe("watch lines", () => {
  const event = (type: WatchEventType, a = agent({ name: "beta" })) =>
    create(WatchHealthResponseSchema, {
      type,
      revision: 7n,
      agent: a,
      time: timestampFromMs(T0_MS + 5_000),
    });

  it("prints time, name, state/health and reason", () => {
    const beta = cannedAgents().get("beta");
    expect(formatWatchEvent(event(WatchEventType.CHANGE, beta), T0_MS)).toBe(
      "2025-06-01T12:00:05Z beta RUNNING/HEALTHY STARTED: HTTP 200",
    );
    expect(formatWatchEvent(event(WatchEventType.SNAPSHOT), T0_MS)).toBe(
      "2025-06-01T12:00:05Z beta DISCOVERED/UNKNOWN",
    );
    expect(formatWatchEvent(event(WatchEventType.REMOVED), T0_MS)).toBe(
      "2025-06-01T12:00:05Z beta REMOVED",
    );
  });

  it("prints nothing for markers and heartbeats", () => {
    const marker = create(WatchHealthResponseSchema, { type: WatchEventType.HEARTBEAT });
    expect(formatWatchEvent(marker, T0_MS)).toBeUndefined();
  });
});

describe("JSON", () => {
  it("uses proto JSON names, enum names, and keeps default scalars", () => {
    const response = create(GetStatusResponseSchema, { agent: cannedAgents().get("alpha") });
    const json = messageJson(GetStatusResponseSchema, response);
    expect(json).toMatchObject({
      agent: {
        name: "alpha",
        state: "AGENT_STATE_DISCOVERED",
        health: "HEALTH_STATUS_UNKNOWN",
        port: 0,
        pid: 0,
        restartCount: 0,
        memoryBytes: "0",
        configPath: "/srv/agents/alpha/agent.toml",
      },
    });
  });
});

describe("colour", () => {
  it("is on only for a TTY without NO_COLOR, TERM=dumb or --no-color", () => {
    expect(colorEnabled({ isTTY: true }, {})).toBe(true);
    expect(colorEnabled({ isTTY: false }, {})).toBe(false);
    expect(colorEnabled({}, {})).toBe(false);
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: "1" })).toBe(false);
    expect(colorEnabled({ isTTY: true }, { NO_COLOR: "" })).toBe(true);
    expect(colorEnabled({ isTTY: true }, { TERM: "dumb" })).toBe(false);
    expect(colorEnabled({ isTTY: true }, {}, true)).toBe(false);
  });
});
