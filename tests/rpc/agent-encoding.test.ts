import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { AgentSchema } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  GetStatusResponseSchema,
  ListAgentsResponseSchema,
  WatchEventType,
  WatchHealthResponseSchema,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { AgentChange, AgentStatus } from "../../src/core/agent-status.ts";
import { agentToProto } from "../../src/rpc/agent-convert.ts";
import { AgentEncoder } from "../../src/rpc/agent-encoding.ts";

function status(name: string, overrides: Partial<AgentStatus> = {}): AgentStatus {
  return {
    name,
    state: "RUNNING",
    health: "HEALTHY",
    port: 8100,
    pid: 4242,
    restartCount: 1,
    maxRestarts: 3,
    configPath: `/srv/atoll_agents/${name}/agent.toml`,
    version: "1.2.0",
    description: "echo",
    capabilities: ["chat", "echo"],
    startTimeMs: 1_700_000_000_123,
    stateReason: "HEALTHY",
    stateMessage: "",
    stateSinceMs: 1_700_000_001_000,
    lastExit: { code: 1, signal: null, atMs: 1_699_999_999_000 },
    nextRestartAtMs: undefined,
    lastHealthCheckMs: 1_700_000_002_000,
    healthMessage: "200 OK",
    memoryBytes: 41_000_000,
    warnings: [],
    definitionRemoved: false,
    logPath: `/var/lib/atoll/logs/${name}.log`,
    host: "atoll-host",
    instance: "",
    ...overrides,
  };
}

describe("AgentEncoder", () => {
  it("composes replies that decode to the same messages as encoding them whole", () => {
    const encoder = new AgentEncoder();
    const a = status("a");
    const b = status("b", { state: "BACKOFF", nextRestartAtMs: 1_700_000_009_000, pid: 0 });
    const one = encoder.reply(GetStatusResponseSchema, "agent", [a]);
    expect(
      equals(
        GetStatusResponseSchema,
        fromBinary(GetStatusResponseSchema, one.bytes),
        create(GetStatusResponseSchema, { agent: agentToProto(a) }),
      ),
    ).toBe(true);
    const list = encoder.reply(ListAgentsResponseSchema, "agents", [a, b]);
    expect(fromBinary(ListAgentsResponseSchema, list.bytes).agents.map((x) => x.name)).toEqual([
      "a",
      "b",
    ]);
    expect(
      equals(
        ListAgentsResponseSchema,
        fromBinary(ListAgentsResponseSchema, list.bytes),
        create(ListAgentsResponseSchema, { agents: [agentToProto(a), agentToProto(b)] }),
      ),
    ).toBe(true);
  });

  it("encodes an agent again only when its status changed", () => {
    const encoder = new AgentEncoder();
    const first = encoder.agent(status("a"));
    // A rebuilt status with equal values (fresh arrays included) reuses the bytes.
    expect(encoder.agent(status("a", { warnings: [], capabilities: ["chat", "echo"] }))).toBe(
      first,
    );
    const changed = encoder.agent(status("a", { memoryBytes: 42_000_000 }));
    expect(changed).not.toBe(first);
    expect(fromBinary(AgentSchema, changed).memoryBytes).toBe(42_000_000n);
    expect(encoder.agent(status("a", { capabilities: ["chat"] }))).not.toBe(changed);
    const exited = encoder.agent(status("a", { lastExit: { code: 2, signal: null, atMs: 5 } }));
    expect(fromBinary(AgentSchema, exited).lastExit?.code).toBe(2);
  });

  it("encodes a change event once for every watcher, with all its fields", () => {
    const encoder = new AgentEncoder();
    const change: AgentChange = {
      revision: 1_700_000_000_000_007,
      kind: "change",
      name: "a",
      previousState: "STARTING",
      previousHealth: "UNKNOWN",
      status: status("a"),
      atMs: 1_700_000_003_000,
    };
    const event = encoder.changeEvent(change);
    expect(encoder.changeEvent(change)).toBe(event);
    const expected = create(WatchHealthResponseSchema, {
      type: WatchEventType.CHANGE,
      revision: 1_700_000_000_000_007n,
      agent: agentToProto(change.status),
      previousState: agentToProto(status("x", { state: "STARTING" })).state,
      previousHealth: agentToProto(status("x", { health: "UNKNOWN" })).health,
      time: timestampFromMs(change.atMs),
    });
    expect(
      equals(
        WatchHealthResponseSchema,
        fromBinary(WatchHealthResponseSchema, event.bytes),
        expected,
      ),
    ).toBe(true);
    expect(event.bytes.length).toBe(toBinary(WatchHealthResponseSchema, expected).length);
  });

  it("refuses a field that does not hold agents", () => {
    expect(() => new AgentEncoder().reply(GetStatusResponseSchema, "nope", [])).toThrow(TypeError);
  });
});
