import { appendFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { credentials, status } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { AgentState, HealthStatus } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  DeploymentService,
  WatchEventType,
  type WatchHealthResponse,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { systemClock } from "../../src/core/clock.ts";
import { silentLogger } from "../../src/core/logger.ts";
import { createClient, RpcError, type ServiceClient } from "../../src/rpc/grpc-client.ts";
import { type RpcServer, startRpcServer } from "../../src/rpc/server.ts";
import { createHarness, faultAgentToml, type Harness } from "../supervisor/harness.ts";

let harness: Harness | undefined;
let server: RpcServer | undefined;
let client: ServiceClient<typeof DeploymentService> | undefined;

afterEach(async () => {
  client?.close();
  server?.beginDrain();
  await server?.close(1000);
  await harness?.close();
  harness = undefined;
  server = undefined;
  client = undefined;
});

async function setup(
  names: string[],
  options: {
    heartbeatIntervalMs?: number;
    watchCap?: { total: number; perClient: number };
    env?: Record<string, string>;
  } = {},
) {
  const { env, ...serverOptions } = options;
  harness = await createHarness(
    Object.fromEntries(names.map((n) => [n, faultAgentToml(n, { env: env ?? {} })])),
  );
  server = await startRpcServer({
    backend: harness.registry,
    clock: systemClock,
    logger: silentLogger,
    listen: "127.0.0.1:0",
    ...serverOptions,
  });
  client = createClient(DeploymentService, server.address, credentials.createInsecure());
  return { harness, server, client };
}

async function rpcError(promise: Promise<unknown>): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof RpcError) return error;
    throw error;
  }
  throw new Error("expected the call to fail");
}

/** Reads events from a watch until `until` says stop; returns them all. */
async function collect<T>(stream: AsyncIterable<T>, until: (event: T) => boolean): Promise<T[]> {
  const events: T[] = [];
  for await (const event of stream) {
    events.push(event);
    if (until(event)) break;
  }
  return events;
}

describe("DeploymentService over gRPC", () => {
  it("lists agents sorted by name and filters them by state", async () => {
    const { client } = await setup(["b", "a"]);
    await client.deploy({ name: "b" });
    const all = await client.listAgents({});
    expect(all.agents.map((a) => a.name)).toEqual(["a", "b"]);
    const running = await client.listAgents({ states: [AgentState.RUNNING] });
    expect(running.agents.map((a) => a.name)).toEqual(["b"]);
    const bad = await rpcError(client.listAgents({ states: [99 as AgentState] }));
    expect(bad).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT" });
  });

  it("answers unknown, empty, hostile and oversized names with precise errors", async () => {
    const { client } = await setup(["a"]);
    expect(await rpcError(client.getStatus({ name: "ghost" }))).toMatchObject({
      code: status.NOT_FOUND,
      reason: "AGENT_NOT_FOUND",
    });
    for (const name of ["", "../etc", "a\u0000b", "x".repeat(10_000), "a/b"]) {
      expect(await rpcError(client.deploy({ name }))).toMatchObject({
        code: status.INVALID_ARGUMENT,
        reason: "INVALID_AGENT_NAME",
      });
    }
    expect((await client.getStatus({ name: "a" })).agent?.state).toBe(AgentState.DISCOVERED);
  });

  it("finishes a start the client stopped waiting for, instead of leaving it half-started", async () => {
    const { client, harness } = await setup(["a"], {
      env: { FAULT: "slow-start", START_DELAY_MS: "800" },
    });
    const error = await rpcError(client.deploy({ name: "a" }, { deadlineMs: 300 }));
    expect(error.code).toBe(status.DEADLINE_EXCEEDED);
    const settled = await harness.waitFor(
      "a",
      (s) => s.state === "RUNNING" && s.health === "HEALTHY",
    );
    expect(settled.pid).toBeGreaterThan(0);
  });

  it("watches: a snapshot per agent, a completion marker, then changes with rising revisions", async () => {
    const { client } = await setup(["a", "b"]);
    const stream = client.watchHealth({});
    const iterator = stream[Symbol.asyncIterator]();
    const snapshot: WatchHealthResponse[] = [];
    for (;;) {
      const next = await iterator.next();
      if (next.done) throw new Error("stream ended");
      snapshot.push(next.value);
      if (next.value.type === WatchEventType.SNAPSHOT_COMPLETE) break;
    }
    expect(snapshot.map((e) => [e.type, e.agent?.name])).toEqual([
      [WatchEventType.SNAPSHOT, "a"],
      [WatchEventType.SNAPSHOT, "b"],
      [WatchEventType.SNAPSHOT_COMPLETE, undefined],
    ]);
    await client.deploy({ name: "a" });
    const changes: WatchHealthResponse[] = [];
    while (true) {
      const next = await iterator.next();
      if (next.done) break;
      changes.push(next.value);
      if (next.value.agent?.state === AgentState.RUNNING) break;
    }
    await iterator.return?.();
    expect(changes.map((c) => c.agent?.state)).toEqual([AgentState.STARTING, AgentState.RUNNING]);
    expect(changes[0]?.previousState).toBe(AgentState.DISCOVERED);
    expect(changes[1]).toMatchObject({
      type: WatchEventType.CHANGE,
      previousState: AgentState.STARTING,
      agent: { health: HealthStatus.HEALTHY },
    });
    const revisions = changes.map((c) => c.revision);
    expect(revisions[1]).toBe((revisions[0] ?? 0n) + 1n);
    expect(revisions[0]).toBeGreaterThan(snapshot[2]?.revision ?? 0n);
  });

  it("watches only the named agents and refuses an unknown name", async () => {
    const { client } = await setup(["a", "b"]);
    const events = await collect(
      client.watchHealth({ names: ["b"] }),
      (e) => e.type === WatchEventType.SNAPSHOT_COMPLETE,
    );
    expect(events.map((e) => e.agent?.name ?? "-")).toEqual(["b", "-"]);
    const error = await rpcError(collect(client.watchHealth({ names: ["ghost"] }), () => true));
    expect(error).toMatchObject({ code: status.NOT_FOUND, reason: "AGENT_NOT_FOUND" });
  });

  it("resumes after a revision with the missed changes instead of a snapshot", async () => {
    const { client } = await setup(["a"]);
    const first = await collect(
      client.watchHealth({}),
      (e) => e.type === WatchEventType.SNAPSHOT_COMPLETE,
    );
    const seen = first.at(-1)?.revision ?? 0n;
    await client.deploy({ name: "a" });
    await client.undeploy({ name: "a" });
    const resumed = await collect(
      client.watchHealth({ resumeAfterRevision: seen }),
      (e) => e.agent?.state === AgentState.STOPPED,
    );
    expect(resumed.every((e) => e.type === WatchEventType.CHANGE)).toBe(true);
    expect(resumed.map((e) => e.agent?.state)).toEqual([
      AgentState.STARTING,
      AgentState.RUNNING,
      AgentState.STOPPING,
      AgentState.STOPPED,
    ]);
    expect(resumed[0]?.revision).toBe(seen + 1n);
  });

  it("ends a resume's replay with a heartbeat, at once even when nothing was missed", async () => {
    // Idle heartbeats only every 10 minutes: a heartbeat within the test is the caught-up one.
    const { client } = await setup(["a"], { heartbeatIntervalMs: 600_000 });
    let seen = 0n;
    for await (const event of client.watchHealth({})) {
      if (event.type === WatchEventType.SNAPSHOT_COMPLETE) {
        seen = event.revision;
        break;
      }
    }
    const first = await collect(
      client.watchHealth({ resumeAfterRevision: seen }),
      (e) => e.type === WatchEventType.HEARTBEAT,
    );
    expect(first.map((e) => [e.type, e.revision])).toEqual([[WatchEventType.HEARTBEAT, seen]]);
  });

  it("sends heartbeats while nothing changes", async () => {
    const { client } = await setup(["a"], { heartbeatIntervalMs: 100 });
    const events = await collect(
      client.watchHealth({}),
      (e) => e.type === WatchEventType.HEARTBEAT,
    );
    expect(events.at(-1)?.type).toBe(WatchEventType.HEARTBEAT);
  });

  it("ends open watches with UNAVAILABLE when the server drains", async () => {
    const { client, server } = await setup(["a"]);
    const stream = client.watchHealth({});
    const pending = collect(stream, () => false);
    await new Promise((resolve) => setImmediate(resolve));
    const iterated = await collect(
      client.watchHealth({}),
      (e) => e.type === WatchEventType.SNAPSHOT_COMPLETE,
    );
    expect(iterated.length).toBeGreaterThan(0);
    server.beginDrain();
    const error = await rpcError(pending);
    expect(error).toMatchObject({ code: status.UNAVAILABLE, reason: "SERVER_SHUTTING_DOWN" });
  });

  it("streams the last lines of an agent's log, then follows new ones", async () => {
    const { client, harness } = await setup(["a"]);
    const logPath = path.join(harness.dir, "logs", "a.log");
    await mkdir(path.dirname(logPath), { recursive: true });
    await appendFile(logPath, "one\ntwo\nthree\n");
    const tail = await collect(client.streamLogs({ name: "a", tailLines: 2 }), () => false);
    expect(tail.flatMap((m) => m.lines)).toEqual(["two", "three"]);
    const lines: string[] = [];
    const follow = client.streamLogs({ name: "a", tailLines: 1, follow: true });
    for await (const message of follow) {
      lines.push(...message.lines);
      if (lines.length === 1) await appendFile(logPath, "four\nfive\n");
      if (lines.includes("five")) break;
    }
    expect(lines).toEqual(["three", "four", "five"]);
    expect(
      await rpcError(collect(client.streamLogs({ name: "a", tailLines: -1 }), () => false)),
    ).toMatchObject({
      code: status.INVALID_ARGUMENT,
    });
  });

  it("refuses a watcher beyond the cap with TOO_MANY_WATCHERS", async () => {
    const { client } = await setup(["a"], { watchCap: { total: 1, perClient: 1 } });
    const first = client.watchHealth({})[Symbol.asyncIterator]();
    await first.next();
    const error = await rpcError(collect(client.watchHealth({}), () => true));
    expect(error).toMatchObject({ code: status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_WATCHERS" });
    await first.return?.();
  });

  it("rejects an oversized request and keeps serving", async () => {
    const { client } = await setup(["a"]);
    const error = await rpcError(client.getStatus({ name: "x".repeat(5 * 1024 * 1024) }));
    expect(error.code).toBe(status.RESOURCE_EXHAUSTED);
    expect((await client.getStatus({ name: "a" })).agent?.name).toBe("a");
  });
});
