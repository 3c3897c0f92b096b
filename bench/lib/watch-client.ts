/**
 * A child process holding many WatchHealth streams to an atoll-deploy daemon, driven by the
 * harness over IPC (bench/lib/watch-protocol.ts). Each stream checks that the revisions of the
 * changes it gets are contiguous, and on an error re-opens resuming after the last revision it
 * saw (bounded: at most 5 times per stream).
 */
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { WatchEventType } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { RpcError } from "../../src/rpc/grpc-client.ts";
import { type AtollClient, atollClient } from "../tools/atoll.ts";
import { wallMs } from "./timing.ts";
import type { FromClient, ToClient } from "./watch-protocol.ts";

const MAX_RECONNECTS_PER_STREAM = 5;

interface StreamState {
  /** Last revision seen in order (0 before the snapshot is complete). */
  lastRevision: bigint;
  snapshotDone: boolean;
  /** Receive time of the timed event of the armed round. */
  captured: number | undefined;
  open: boolean;
}

function send(message: FromClient): void {
  process.send?.(message);
}

const clients: AtollClient[] = [];
const streams: StreamState[] = [];
const stop = new AbortController();
let armed: { round: number; target: string } | undefined;
let changes = 0;
let gaps = 0;
let reconnects = 0;
const errors: Record<string, number> = {};

function maybeReport(): void {
  if (armed === undefined) return;
  const live = streams.filter((s) => s.open);
  if (live.length > 0 && live.every((s) => s.captured !== undefined)) report(armed.round);
}

function report(round: number): void {
  if (armed?.round !== round) return;
  const times: number[] = [];
  let missing = 0;
  for (const s of streams) {
    if (s.captured !== undefined) times.push(s.captured);
    else if (s.open) missing += 1;
  }
  armed = undefined;
  send({ type: "arrivals", round, times, missing });
}

async function runStream(
  client: AtollClient,
  state: StreamState,
  onSnapshot: () => void,
): Promise<void> {
  let attempts = 0;
  let reportedReady = false;
  for (;;) {
    try {
      const resume = state.snapshotDone ? state.lastRevision : 0n;
      for await (const event of client.watchHealth(
        { resumeAfterRevision: resume },
        { signal: stop.signal },
      )) {
        const now = wallMs();
        switch (event.type) {
          case WatchEventType.SNAPSHOT_COMPLETE:
            state.lastRevision = event.revision;
            state.snapshotDone = true;
            state.open = true;
            if (!reportedReady) {
              reportedReady = true;
              onSnapshot();
            }
            break;
          case WatchEventType.CHANGE:
          case WatchEventType.REMOVED: {
            changes += 1;
            if (state.snapshotDone && event.revision !== state.lastRevision + 1n) gaps += 1;
            // A resumed stream has no snapshot: its replay starts right after lastRevision.
            state.lastRevision = event.revision;
            state.snapshotDone = true;
            state.open = true;
            if (
              armed !== undefined &&
              state.captured === undefined &&
              event.agent?.name === armed.target &&
              event.previousState === AgentState.RUNNING
            ) {
              state.captured = now;
              maybeReport();
            }
            break;
          }
          default:
            break;
        }
      }
      state.open = false;
      return;
    } catch (error) {
      state.open = false;
      if (stop.signal.aborted) return;
      const text =
        error instanceof RpcError
          ? `${error.code} ${error.reason ?? error.details}`
          : String(error);
      errors[text] = (errors[text] ?? 0) + 1;
      attempts += 1;
      if (attempts > MAX_RECONNECTS_PER_STREAM) {
        if (!reportedReady) {
          reportedReady = true;
          onSnapshot();
        }
        return;
      }
      reconnects += 1;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempts));
    }
  }
}

const running: Promise<void>[] = [];

process.on("message", (message: ToClient) => {
  switch (message.type) {
    case "open": {
      for (let i = 0; i < message.channels; i++) clients.push(atollClient(message.address, true));
      let pending = message.streams;
      for (let i = 0; i < message.streams; i++) {
        const state: StreamState = {
          lastRevision: 0n,
          snapshotDone: false,
          captured: undefined,
          open: false,
        };
        streams.push(state);
        const client = clients[i % clients.length] as AtollClient;
        running.push(
          runStream(client, state, () => {
            pending -= 1;
            if (pending === 0) {
              const opened = streams.filter((s) => s.open).length;
              const firstError = Object.keys(errors)[0];
              send({
                type: "ready",
                opened,
                failed: message.streams - opened,
                ...(firstError !== undefined && { firstError }),
              });
            }
          }),
        );
      }
      break;
    }
    case "arm":
      for (const s of streams) s.captured = undefined;
      armed = { round: message.round, target: message.target };
      send({ type: "armed", round: message.round });
      break;
    case "collect":
      report(message.round);
      break;
    case "close": {
      const open = streams.filter((s) => s.open).length;
      stop.abort();
      void Promise.allSettled(running).then(() => {
        for (const client of clients) client.close();
        send({ type: "closed", totals: { open, changes, gaps, errors, reconnects } });
        process.disconnect?.();
      });
      break;
    }
  }
});
