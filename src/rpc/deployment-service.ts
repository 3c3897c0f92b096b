import { create, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  type DeploymentService,
  DeployResponseSchema,
  GetStatusResponseSchema,
  type InstallAgentHeader,
  type InstallAgentRequestSchema,
  InstallAgentResponseSchema,
  InstallOutcome,
  ListAgentsResponseSchema,
  RemoveAgentResponseSchema,
  RestartResponseSchema,
  UndeployResponseSchema,
  WatchEventType,
} from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type {
  AgentBackend,
  InstallOutcome as DomainInstallOutcome,
  PackageInstaller,
  PackageUploadHeader,
} from "../core/agent-backend.ts";
import type { Clock } from "../core/clock.ts";
import { DeployError } from "../core/errors.ts";
import { agentStateFromProto, packageFormatFromProto } from "./agent-convert.ts";
import { AgentEncoder } from "./agent-encoding.ts";
import type { CallContext, ServiceHandlers } from "./service-handlers.ts";
import { SnapshotGate } from "./snapshot-gate.ts";
import {
  DEFAULT_LOG_FOLLOW_CAP,
  DEFAULT_WATCH_CAP,
  type StreamCap,
  StreamLimiter,
} from "./stream-limits.ts";
import { WatchQueue } from "./watch-queue.ts";

/** Lines per StreamLogs message. */
const LOG_BATCH_LINES = 500;

/**
 * A snapshot of every agent is reused by the watchers that start within this many ms of it at
 * the same revision: a burst of a thousand watchers costs one encoding, not a thousand. (Fields
 * that change without an event, such as memory_bytes, are then at most this old.)
 */
const SNAPSHOT_REUSE_MS = 250;

export interface DeploymentServiceOptions {
  /** The agents: the local supervisor or another backend. */
  readonly backend: AgentBackend;
  readonly clock: Clock;
  /** Idle time after which a watch gets a HEARTBEAT (default 15 s). */
  readonly heartbeatIntervalMs?: number;
  /** Most concurrent WatchHealth streams overall and per client (default {@link DEFAULT_WATCH_CAP}). */
  readonly watchCap?: StreamCap;
  /** Most concurrent StreamLogs follow streams overall and per client (default {@link DEFAULT_LOG_FOLLOW_CAP}). */
  readonly logFollowCap?: StreamCap;
  /** Changes buffered per watcher before coalescing (default 1024). */
  readonly watchBufferLimit?: number;
  /** Aborted when the server drains: ends open watches and log follows with UNAVAILABLE. */
  readonly shutdownSignal: AbortSignal;
}

/** The installer of `backend`, or NOT_SUPPORTED (UNIMPLEMENTED) when it has none. */
function installerOf(backend: AgentBackend): PackageInstaller {
  const packages = backend.packages;
  if (packages === undefined) {
    throw new DeployError("NOT_SUPPORTED", "this server's backend does not install agent packages");
  }
  return packages;
}

/** The domain form of an InstallAgent header; INVALID_ARGUMENT for a malformed field. */
function uploadHeader(header: InstallAgentHeader): PackageUploadHeader {
  if (!/^[0-9a-fA-F]{64}$/.test(header.sha256)) {
    throw new DeployError(
      "INVALID_ARGUMENT",
      "header.sha256 must be the archive's SHA-256 as 64 hex digits",
    );
  }
  const format = packageFormatFromProto(header.format);
  if (format === null) {
    throw new DeployError("INVALID_ARGUMENT", `header.format: unknown format ${header.format}`);
  }
  if (header.sizeBytes > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new DeployError("INVALID_ARGUMENT", "header.size_bytes is out of range");
  }
  return {
    sha256: header.sha256.toLowerCase(),
    force: header.force,
    start: header.start,
    format,
    sizeBytes: header.sizeBytes === 0n ? undefined : Number(header.sizeBytes),
  };
}

type InstallRequest = MessageShape<typeof InstallAgentRequestSchema>;

/** The archive bytes after the header; a second header is INVALID_ARGUMENT. */
async function* archiveChunks(
  requests: AsyncIterator<InstallRequest>,
): AsyncGenerator<Uint8Array, void, undefined> {
  for (;;) {
    const next = await requests.next();
    if (next.done === true) return;
    const payload = next.value.payload;
    if (payload.case === "chunk") {
      if (payload.value.length > 0) yield payload.value;
    } else if (payload.case === "header") {
      throw new DeployError(
        "INVALID_ARGUMENT",
        "InstallAgent: only the first message may be a header",
      );
    }
  }
}

/** Ends the request stream when a handler stops reading it early (the adapter discards the rest). */
function release(requests: AsyncIterator<InstallRequest>): void {
  requests.return?.().catch(() => undefined);
}

const OUTCOME: Readonly<Record<DomainInstallOutcome, InstallOutcome>> = {
  INSTALLED: InstallOutcome.INSTALLED,
  REPLACED: InstallOutcome.REPLACED,
  ALREADY_INSTALLED: InstallOutcome.ALREADY_INSTALLED,
};

/** The DeploymentService handlers over an agent backend. */
export function createDeploymentService(
  options: DeploymentServiceOptions,
): ServiceHandlers<typeof DeploymentService> {
  const { backend, clock, shutdownSignal } = options;
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 15_000;
  const watchers = new StreamLimiter(
    options.watchCap ?? DEFAULT_WATCH_CAP,
    "TOO_MANY_WATCHERS",
    "WatchHealth streams",
  );
  const logFollowers = new StreamLimiter(
    options.logFollowCap ?? DEFAULT_LOG_FOLLOW_CAP,
    "TOO_MANY_LOG_STREAMS",
    "StreamLogs follow streams",
  );
  const encoder = new AgentEncoder();
  const snapshots = new SnapshotGate();
  let shared:
    | {
        readonly revision: number;
        readonly atMs: number;
        readonly events: ReturnType<AgentEncoder["snapshotEvents"]>;
      }
    | undefined;
  /** The SNAPSHOT events of `selected` agents at `revision`. */
  const snapshotEvents = (
    revision: number,
    selectAll: boolean,
    selected: (n: string) => boolean,
  ) => {
    const nowMs = clock.now();
    if (!selectAll) {
      const statuses = backend.list().filter((status) => selected(status.name));
      return { atMs: nowMs, events: encoder.snapshotEvents(statuses, revision, nowMs) };
    }
    if (
      shared === undefined ||
      shared.revision !== revision ||
      nowMs - shared.atMs > SNAPSHOT_REUSE_MS
    ) {
      shared = {
        revision,
        atMs: nowMs,
        events: encoder.snapshotEvents(backend.list(), revision, nowMs),
      };
    }
    return shared;
  };

  const shuttingDown = (): DeployError =>
    new DeployError("SERVER_SHUTTING_DOWN", "the server is shutting down");

  return {
    async deploy(request) {
      const status = await backend.deploy(request.name);
      return encoder.reply(DeployResponseSchema, "agent", [status]);
    },
    async undeploy(request) {
      const status = await backend.undeploy(request.name);
      return encoder.reply(UndeployResponseSchema, "agent", [status]);
    },
    async restart(request) {
      const status = await backend.restart(request.name);
      return encoder.reply(RestartResponseSchema, "agent", [status]);
    },
    async getStatus(request) {
      return encoder.reply(GetStatusResponseSchema, "agent", [backend.status(request.name)]);
    },
    async listAgents(request) {
      const wanted = new Set<string>();
      for (const value of request.states) {
        const state = agentStateFromProto(value);
        if (state === undefined) {
          throw new DeployError("INVALID_ARGUMENT", `states: unknown agent state ${value}`);
        }
        wanted.add(state);
      }
      const agents = backend.list().filter((s) => wanted.size === 0 || wanted.has(s.state));
      return encoder.reply(ListAgentsResponseSchema, "agents", agents);
    },

    async installAgent(requests, context: CallContext) {
      const packages = installerOf(backend);
      if (shutdownSignal.aborted) throw shuttingDown();
      const iterator = requests[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done === true || first.value.payload.case !== "header") {
        throw new DeployError(
          "INVALID_ARGUMENT",
          "InstallAgent: the first message must be a header with the archive's sha256",
        );
      }
      let result: Awaited<ReturnType<PackageInstaller["install"]>>;
      try {
        const header = uploadHeader(first.value.payload.value);
        // A drain cancels an install like a client would: nothing is left half-installed.
        const signal = AbortSignal.any([context.signal, shutdownSignal]);
        result = await packages.install(header, archiveChunks(iterator), signal);
      } finally {
        release(iterator);
      }
      const rest = toBinary(
        InstallAgentResponseSchema,
        create(InstallAgentResponseSchema, { outcome: OUTCOME[result.outcome] }),
      );
      return encoder.reply(InstallAgentResponseSchema, "agent", [result.status], rest);
    },
    async removeAgent(request) {
      const status = await installerOf(backend).remove(request.name);
      return encoder.reply(RemoveAgentResponseSchema, "agent", [status]);
    },

    async *streamLogs(request, context: CallContext) {
      if (request.tailLines < 0) {
        throw new DeployError("INVALID_ARGUMENT", "tail_lines must not be negative");
      }
      backend.status(request.name); // validates the name before anything is streamed
      // A tail alone is bounded work; only a follow holds a place until it ends.
      const release = request.follow ? logFollowers.acquire(context.peer) : undefined;
      // Ends when the client cancels, the server drains, or the backend ends it (agent removed).
      const stop = AbortSignal.any([context.signal, shutdownSignal]);
      try {
        for await (const lines of backend.streamLogs(request.name, {
          tailLines: request.tailLines,
          follow: request.follow,
          signal: stop,
        })) {
          for (let i = 0; i < lines.length; i += LOG_BATCH_LINES) {
            yield { lines: lines.slice(i, i + LOG_BATCH_LINES) };
          }
        }
        if (request.follow && shutdownSignal.aborted && !context.signal.aborted) {
          throw shuttingDown();
        }
      } finally {
        release?.();
      }
    },

    async *watchHealth(request, context: CallContext) {
      if (shutdownSignal.aborted) throw shuttingDown();
      for (const name of request.names) backend.status(name); // validates every name first
      const release = watchers.acquire(context.peer);
      const names = new Set(request.names);
      const selected = (name: string): boolean => names.size === 0 || names.has(name);
      const queue = new WatchQueue(options.watchBufferLimit);
      // Subscribe before the snapshot so no change between the two is lost.
      const unsubscribe = backend.events.subscribe((change) => {
        if (selected(change.name)) queue.push(change);
      });
      // Wakes the loop below at once on shutdown or cancel (not at the next heartbeat).
      const wake = (): void => queue.wake();
      shutdownSignal.addEventListener("abort", wake, { once: true });
      context.signal.addEventListener("abort", wake, { once: true });
      try {
        const resumeAfter = Number(request.resumeAfterRevision);
        const missed = resumeAfter > 0 ? backend.events.since(resumeAfter) : undefined;
        let sentUpTo = backend.events.revision;
        if (missed !== undefined) {
          // Resume: replay what the client missed instead of a snapshot.
          for (const change of missed) {
            if (selected(change.name)) yield encoder.changeEvent(change);
          }
          // Caught up: say so at once, as SNAPSHOT_COMPLETE does after a snapshot. Without it a
          // client that missed nothing hears nothing (not even response headers, which go out
          // with the first message) until the next change or heartbeat.
          yield {
            type: WatchEventType.HEARTBEAT,
            revision: BigInt(sentUpTo),
            time: timestampFromMs(clock.now()),
          };
        } else {
          // Changes meanwhile are queued (subscribed above) and sent after the snapshot.
          const leave = await snapshots.enter(AbortSignal.any([context.signal, shutdownSignal]));
          try {
            if (shutdownSignal.aborted) throw shuttingDown();
            if (context.signal.aborted) return;
            sentUpTo = backend.events.revision;
            const snapshot = snapshotEvents(sentUpTo, names.size === 0, selected);
            yield* snapshot.events;
            yield {
              type: WatchEventType.SNAPSHOT_COMPLETE,
              revision: BigInt(sentUpTo),
              time: timestampFromMs(snapshot.atMs),
            };
          } finally {
            leave();
          }
        }
        while (!context.signal.aborted) {
          if (shutdownSignal.aborted) throw shuttingDown();
          if (queue.overflowed) {
            throw new DeployError(
              "WATCHER_TOO_SLOW",
              "the watcher did not keep up with the changes; resume after the last revision seen",
            );
          }
          const changes = queue.drain();
          if (changes.length === 0) {
            await queue.waitForItems(heartbeatIntervalMs);
            if (queue.size === 0 && !context.signal.aborted && !shutdownSignal.aborted) {
              yield {
                type: WatchEventType.HEARTBEAT,
                revision: BigInt(backend.events.revision),
                time: timestampFromMs(clock.now()),
              };
            }
            continue;
          }
          for (const change of changes) {
            if (change.revision <= sentUpTo) continue; // already covered by the snapshot/replay
            sentUpTo = change.revision;
            yield encoder.changeEvent(change);
          }
        }
      } finally {
        release();
        unsubscribe();
        shutdownSignal.removeEventListener("abort", wake);
        context.signal.removeEventListener("abort", wake);
      }
    },
  };
}
