/**
 * A WatchHealth client that lives through the whole soak: it reconnects after every error
 * (daemon restarts included) resuming after the last revision it saw, and checks what a client
 * relies on: within a connection revisions are contiguous (all-agent watchers) or increasing
 * (filtered watchers); each CHANGE's previous state is the state the watcher last saw for that
 * agent (so a lost event shows even across a resume); every transition is an edge the lifecycle
 * allows; and at the end its view of every agent equals ListAgents.
 */
import { WatchEventType } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { RpcError } from "../../src/rpc/grpc-client.ts";
import { delay } from "../lib/timing.ts";
import { atollClient, healthName, stateName } from "../tools/atoll.ts";

/**
 * Allowed lifecycle edges as watchers see them (docs/lifecycle.md): one change per event, so an
 * event that makes several hops shows its first and last state (STOPPING → INVALID). FAILED and
 * STOPPED follow a process only through STOPPING; BACKOFF ends STOPPED or FAILED when no process
 * is left to stop.
 */
const EDGES: Readonly<Record<string, readonly string[]>> = {
  DISCOVERED: ["STARTING", "RUNNING", "FAILED", "INVALID"],
  STOPPED: ["STARTING", "RUNNING", "FAILED", "INVALID"],
  FAILED: ["STARTING", "RUNNING", "INVALID"],
  STARTING: ["RUNNING", "BACKOFF", "STOPPING"],
  RUNNING: ["BACKOFF", "STOPPING"],
  BACKOFF: ["STARTING", "RUNNING", "STOPPING", "STOPPED", "FAILED", "INVALID"],
  STOPPING: ["STOPPED", "FAILED", "INVALID"],
  INVALID: ["DISCOVERED"],
};

export interface AgentView {
  readonly state: string;
  readonly health: string;
  readonly pid: number;
}

/** Problems found, each as a short human line (capped so a broken run cannot eat memory). */
class Findings {
  readonly lines: string[] = [];
  count = 0;
  add(line: string): void {
    this.count += 1;
    if (this.lines.length < 20) this.lines.push(line);
  }
}

export class SoakWatcher {
  readonly id: string;
  readonly #address: () => string;
  readonly #names: readonly string[];
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;
  #lastRevision = 0n;
  /** Agent name → what the watcher believes. */
  readonly view = new Map<string, AgentView>();
  connects = 0;
  changes = 0;
  tooSlow = 0;
  readonly gaps = new Findings();
  readonly resumeLosses = new Findings();
  readonly previousMismatches = new Findings();
  readonly illegalEdges = new Findings();
  readonly errors = new Map<string, number>();

  constructor(id: string, address: () => string, names: readonly string[] = []) {
    this.id = id;
    this.#address = address;
    this.#names = names;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      const client = atollClient(this.#address(), true);
      try {
        await this.#connection(client);
      } catch (error) {
        if (this.#stop.signal.aborted) break;
        const rpc = error instanceof RpcError ? error : undefined;
        if (rpc?.reason === "WATCHER_TOO_SLOW") this.tooSlow += 1;
        else {
          const key =
            rpc === undefined
              ? String(error)
              : `${rpc.code} ${rpc.reason ?? rpc.details.slice(0, 60)}`;
          this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
        }
      } finally {
        client.close();
      }
      await delay(200, undefined, { signal: this.#stop.signal }).catch(() => undefined);
    }
  }

  async #connection(client: ReturnType<typeof atollClient>): Promise<void> {
    this.connects += 1;
    const resumedFrom = this.#lastRevision;
    let firstChange = true;
    let snapshot = false;
    for await (const event of client.watchHealth(
      { names: [...this.#names], resumeAfterRevision: resumedFrom },
      { signal: this.#stop.signal },
    )) {
      switch (event.type) {
        case WatchEventType.SNAPSHOT:
          snapshot = true;
          if (event.agent !== undefined) this.#see(event.agent.name, event.agent);
          break;
        case WatchEventType.SNAPSHOT_COMPLETE:
          this.#lastRevision = event.revision;
          break;
        case WatchEventType.CHANGE:
        case WatchEventType.REMOVED: {
          this.changes += 1;
          const rev = event.revision;
          const all = this.#names.length === 0;
          if (firstChange && !snapshot && resumedFrom > 0n) {
            // A resume without a snapshot promises the changes right after resumedFrom.
            if (all ? rev !== resumedFrom + 1n : rev <= resumedFrom) {
              this.resumeLosses.add(
                `${this.id}: resumed after revision ${resumedFrom}, no snapshot, first change has revision ${rev}`,
              );
            }
          } else if (all ? rev !== this.#lastRevision + 1n : rev <= this.#lastRevision) {
            this.gaps.add(
              `${this.id}: revision ${rev} after ${this.#lastRevision} on one connection`,
            );
          }
          firstChange = false;
          this.#lastRevision = rev;
          const agent = event.agent;
          if (agent === undefined) break;
          const before = this.view.get(agent.name);
          const previous = stateName(event.previousState);
          const now = stateName(agent.state);
          if (before !== undefined && before.state !== previous) {
            this.previousMismatches.add(
              `${this.id}: ${agent.name} change ${previous}→${now} (rev ${rev}) but last seen ${before.state}`,
            );
          }
          if (previous !== now && !(EDGES[previous] ?? []).includes(now)) {
            this.illegalEdges.add(`${this.id}: ${agent.name} ${previous}→${now} (rev ${rev})`);
          }
          if (event.type === WatchEventType.REMOVED) this.view.delete(agent.name);
          else this.#see(agent.name, agent);
          break;
        }
        default:
          break;
      }
    }
  }

  #see(name: string, agent: { state: number; health: number; pid: number }): void {
    this.view.set(name, {
      state: stateName(agent.state),
      health: healthName(agent.health),
      pid: agent.pid,
    });
  }

  /** Every problem this watcher found, as lines. */
  problems(): string[] {
    const out: string[] = [];
    for (const [label, f] of [
      ["revision gaps within a connection", this.gaps],
      ["events lost on resume (no snapshot, revision not contiguous)", this.resumeLosses],
      ["CHANGE whose previous state differs from the last state seen", this.previousMismatches],
      ["illegal lifecycle transitions", this.illegalEdges],
    ] as const) {
      if (f.count > 0)
        out.push(`${this.id}: ${f.count} ${label}; e.g. ${f.lines.slice(0, 3).join(" | ")}`);
    }
    return out;
  }
}
