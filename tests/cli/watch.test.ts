import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Agent,
  AgentSchema,
  AgentState,
  HealthStatus,
} from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  WatchEventType,
  type WatchHealthResponseSchema,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { DeployError } from "../../src/core/errors.ts";
import type { CallContext } from "../../src/rpc/service-handlers.ts";
import {
  aborted,
  Children,
  cannedAgents,
  type FakeServer,
  fakeHandlers,
  notFound,
  runCli,
  spawnCli,
  startFakeServer,
  T0_MS,
} from "./helpers.ts";

const children = new Children();
const servers: FakeServer[] = [];

afterEach(async () => {
  await children.killAll();
  for (const s of servers.splice(0)) s.server.forceShutdown();
});

type Event = MessageInitShape<typeof WatchHealthResponseSchema>;
type WatchHandler = (
  request: { names: string[]; resumeAfterRevision: bigint },
  context: CallContext,
) => AsyncIterable<Event>;

async function fakeWatch(watchHealth: WatchHandler, port = 0): Promise<FakeServer> {
  const server = await startFakeServer(fakeHandlers(cannedAgents(), { watchHealth }), port);
  servers.push(server);
  return server;
}

function withState(
  base: Agent | undefined,
  state: AgentState,
  health: HealthStatus,
  reason = "",
): Agent {
  if (base === undefined) throw new Error("no agent");
  return create(AgentSchema, { ...base, state, health, stateReason: reason, stateMessage: "" });
}

const at = (seconds: number) => timestampFromMs(T0_MS + seconds * 1000);
const beta = () => cannedAgents().get("beta");
const alpha = () => cannedAgents().get("alpha");

function snapshot(revision: bigint, agents: (Agent | undefined)[]): Event[] {
  return [
    ...agents.map((a) => ({ type: WatchEventType.SNAPSHOT, revision, agent: a, time: at(0) })),
    { type: WatchEventType.SNAPSHOT_COMPLETE, revision, time: at(0) },
  ];
}

function change(revision: bigint, agent: Agent, seconds: number): Event {
  return { type: WatchEventType.CHANGE, revision, agent, time: at(seconds) };
}

const lines = (text: string) => text.split("\n").filter((l) => l !== "");

describe("watch", () => {
  it("prints the snapshot, then one line per change, and exits 0 when interrupted", async () => {
    const requests: { names: string[]; resume: bigint }[] = [];
    const { address } = await fakeWatch(async function* (request, context) {
      requests.push({ names: [...request.names], resume: request.resumeAfterRevision });
      yield* snapshot(4n, [beta()]);
      yield { type: WatchEventType.HEARTBEAT, revision: 4n, time: at(1) };
      yield change(5n, withState(beta(), AgentState.BACKOFF, HealthStatus.UNKNOWN, "EXITED"), 2);
      await aborted(context.signal);
    });
    const cli = spawnCli(children, ["watch", "beta", "--server", address]);
    await cli.waitFor((p) => p.stdout.includes("BACKOFF"));
    cli.child.kill("SIGINT");
    const result = await cli.exited;
    expect(result.code).toBe(0);
    expect(lines(result.stdout)).toEqual([
      "2025-06-01T12:00:00Z beta RUNNING/HEALTHY STARTED: HTTP 200",
      "2025-06-01T12:00:02Z beta BACKOFF/UNKNOWN EXITED",
    ]);
    expect(result.stderr).toBe("");
    expect(requests).toEqual([{ names: ["beta"], resume: 0n }]);
  });

  it("prints one JSON object per event with --json (heartbeats left out)", async () => {
    const { address } = await fakeWatch(async function* (_request, context) {
      yield* snapshot(4n, [beta()]);
      yield { type: WatchEventType.HEARTBEAT, revision: 4n, time: at(1) };
      yield change(5n, withState(beta(), AgentState.STOPPING, HealthStatus.HEALTHY), 2);
      await aborted(context.signal);
    });
    const cli = spawnCli(children, ["watch", "--json", "--server", address]);
    await cli.waitFor((p) => p.stdout.includes("WATCH_EVENT_TYPE_CHANGE"));
    cli.child.kill("SIGINT");
    const result = await cli.exited;
    const events = lines(result.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => [e.type, e.revision])).toEqual([
      ["WATCH_EVENT_TYPE_SNAPSHOT", "4"],
      ["WATCH_EVENT_TYPE_SNAPSHOT_COMPLETE", "4"],
      ["WATCH_EVENT_TYPE_CHANGE", "5"],
    ]);
    expect(events[2]).toMatchObject({
      agent: { name: "beta", state: "AGENT_STATE_STOPPING" },
      time: "2025-06-01T12:00:02Z",
    });
  });

  it("resumes after the last revision when the stream drops, printing nothing twice", async () => {
    const resumes: bigint[] = [];
    const { address } = await fakeWatch(async function* (request, context) {
      resumes.push(request.resumeAfterRevision);
      if (resumes.length === 1) {
        yield* snapshot(4n, [alpha(), beta()]);
        yield change(5n, withState(alpha(), AgentState.STARTING, HealthStatus.UNKNOWN), 1);
        throw new DeployError("WATCHER_TOO_SLOW", "the watcher did not keep up");
      }
      // The server replays from the resume point; revision 5 was seen already.
      yield change(5n, withState(alpha(), AgentState.STARTING, HealthStatus.UNKNOWN), 1);
      yield change(6n, withState(alpha(), AgentState.RUNNING, HealthStatus.HEALTHY), 2);
      await aborted(context.signal);
    });
    const cli = spawnCli(children, ["watch", "--server", address]);
    await cli.waitFor((p) => p.stdout.includes("alpha RUNNING"));
    cli.child.kill("SIGINT");
    const result = await cli.exited;
    expect(result.code).toBe(0);
    expect(resumes).toEqual([0n, 5n]);
    expect(lines(result.stdout)).toEqual([
      "2025-06-01T12:00:00Z alpha DISCOVERED/UNKNOWN",
      "2025-06-01T12:00:00Z beta RUNNING/HEALTHY STARTED: HTTP 200",
      "2025-06-01T12:00:01Z alpha STARTING/UNKNOWN",
      "2025-06-01T12:00:02Z alpha RUNNING/HEALTHY",
    ]);
    expect(result.stderr).toContain("reconnecting");
    expect(result.stderr).toContain("resuming after revision 5");
  });

  it("after a server restart, prints only what differs from what it printed", async () => {
    const first = await fakeWatch(async function* (_request, context) {
      yield* snapshot(9n, [alpha(), beta()]);
      await aborted(context.signal);
    });
    const cli = spawnCli(children, ["watch", "--server", first.address]);
    await cli.waitFor((p) => p.stdout.includes("beta RUNNING"));
    first.server.forceShutdown();
    // The new server process counts revisions from 1 again.
    const resumes: bigint[] = [];
    await fakeWatch(async function* (request, context) {
      resumes.push(request.resumeAfterRevision);
      yield* snapshot(2n, [alpha(), withState(beta(), AgentState.FAILED, HealthStatus.UNKNOWN)]);
      await aborted(context.signal);
    }, first.port);
    await cli.waitFor((p) => p.stdout.includes("beta FAILED"));
    cli.child.kill("SIGINT");
    const result = await cli.exited;
    expect(result.code).toBe(0);
    expect(lines(result.stdout)).toEqual([
      "2025-06-01T12:00:00Z alpha DISCOVERED/UNKNOWN",
      "2025-06-01T12:00:00Z beta RUNNING/HEALTHY STARTED: HTTP 200",
      "2025-06-01T12:00:00Z beta FAILED/UNKNOWN",
    ]);
    expect(resumes.at(-1)).toBe(0n);
  });

  it("exits 3 when the server stays away longer than its retries", async () => {
    const { address, server } = await fakeWatch(async function* (_request, context) {
      yield* snapshot(1n, [beta()]);
      await aborted(context.signal);
    });
    const cli = spawnCli(children, ["watch", "--max-retries", "2", "--server", address]);
    await cli.waitFor((p) => p.stdout.includes("beta RUNNING"));
    server.forceShutdown();
    const result = await cli.exited;
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(
      new RegExp(
        `✗ cannot reach atoll-deploy at ${address.replaceAll(".", "\\.")}: .*gave up after 2 reconnection attempts\\n$`,
      ),
    );
  });

  it("exits 1 naming the agent when the server does not know it", async () => {
    // biome-ignore lint/correctness/useYield: fails like the real server, before any event
    const { address } = await fakeWatch(async function* (request) {
      throw notFound(request.names[0] ?? "");
    });
    const result = await runCli(children, ["watch", "ghost", "--server", address]);
    expect(result).toMatchObject({
      code: 1,
      stderr: "✗ Agent ghost: agent ghost not found (AGENT_NOT_FOUND)\n",
    });
  });
});
