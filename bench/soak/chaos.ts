/**
 * The faults the soak injects into a running daemon: kill -9 of agents, RPC storms on a few
 * agents at once, status bursts, re-floods, stop/start of SIGTERM-ignoring agents, and daemon
 * SIGKILL + restart with an adoption check.
 */
import { AgentState } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { isAlive } from "../lib/procfs.ts";
import { delay } from "../lib/timing.ts";
import { type AtollClient, stateName } from "../tools/atoll.ts";
import type { SoakDaemon } from "./daemon.ts";
import type { SoakAgent } from "./fleet.ts";
import type { Rng } from "./rng.ts";
import { isOurs, type StrayGroup } from "./scans.ts";
import type { RpcTally } from "./tally.ts";

export type Action = "kill" | "storm" | "burst" | "reflood" | "termCycle";

export const ACTION_WEIGHTS: Readonly<Record<Action, number>> = {
  kill: 30,
  storm: 25,
  burst: 15,
  reflood: 10,
  termCycle: 10,
};

export interface ChaosDeps {
  readonly client: AtollClient;
  readonly daemon: SoakDaemon;
  readonly agents: readonly SoakAgent[];
  readonly rng: Rng;
  readonly tally: RpcTally;
  readonly marker: string;
  readonly violations: string[];
  readonly log: (line: string) => void;
  /** Scans for process groups the daemon does not account for; reports each new one. */
  readonly checkStrays: (when: string) => Promise<StrayGroup[]>;
}

const CALL = { deadlineMs: 60_000 } as const;

export class Chaos {
  readonly #d: ChaosDeps;
  readonly counts = new Map<string, number>();
  /** While true, no action signals an agent (the daemon restart is checking adoption). */
  #paused = false;
  adoptionChecks = 0;
  adopted = 0;

  constructor(deps: ChaosDeps) {
    this.#d = deps;
  }

  #count(what: string): void {
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
  }

  #agentsOf(kinds: readonly SoakAgent["kind"][]): SoakAgent[] {
    return this.#d.agents.filter((a) => kinds.includes(a.kind));
  }

  async run(action: Action): Promise<void> {
    this.#count(action);
    switch (action) {
      case "kill":
        return this.#kill();
      case "storm":
        return this.#storm();
      case "burst":
        return this.#burst();
      case "reflood":
        return this.#reflood();
      case "termCycle":
        return this.#termCycle();
    }
  }

  /** kill -9 of a random agent's pid, as the daemon reports it (only if it is one of ours). */
  async #kill(): Promise<void> {
    const { client, rng, tally, marker } = this.#d;
    const agent = rng.pick(this.#d.agents);
    const status = await tally.run("GetStatus", () => client.getStatus({ name: agent.name }, CALL));
    const pid = status?.agent?.pid ?? 0;
    if (this.#paused || !isOurs(pid, marker)) return;
    try {
      process.kill(pid, "SIGKILL");
      this.#count("kill sent");
    } catch {
      // Exited meanwhile.
    }
  }

  /** 10–40 concurrent Deploy/Restart/Undeploy/GetStatus calls on 1–3 agents. */
  async #storm(): Promise<void> {
    const { client, rng, tally } = this.#d;
    const targets = Array.from({ length: rng.int(1, 3) }, () => rng.pick(this.#d.agents));
    const calls: Promise<unknown>[] = [];
    const n = rng.int(10, 40);
    for (let i = 0; i < n; i++) {
      const name = rng.pick(targets).name;
      const op = rng.weighted({ Deploy: 3, Restart: 2, Undeploy: 2, GetStatus: 3 });
      switch (op) {
        case "Deploy":
          calls.push(tally.run(op, () => client.deploy({ name }, CALL)));
          break;
        case "Restart":
          calls.push(tally.run(op, () => client.restart({ name }, CALL)));
          break;
        case "Undeploy":
          calls.push(tally.run(op, () => client.undeploy({ name }, CALL)));
          break;
        case "GetStatus":
          calls.push(tally.run(op, () => client.getStatus({ name }, CALL)));
          break;
      }
    }
    await Promise.all(calls);
    // Leave the storm's agents deployed more often than not, so kills keep finding targets.
    for (const target of new Set(targets)) {
      if (rng.next() < 0.7)
        await tally.run("Deploy", () => client.deploy({ name: target.name }, CALL));
    }
  }

  /** 100–300 concurrent GetStatus and ListAgents calls. */
  async #burst(): Promise<void> {
    const { client, rng, tally } = this.#d;
    const n = rng.int(100, 300);
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        i % 5 === 0
          ? tally.run("ListAgents", () => client.listAgents({}, CALL))
          : tally.run("GetStatus", () =>
              client.getStatus({ name: rng.pick(this.#d.agents).name }, CALL),
            ),
      ),
    );
  }

  /** Restart of a flooding agent: another 12 MiB of output into its log. */
  async #reflood(): Promise<void> {
    const { client, rng, tally } = this.#d;
    const agent = rng.pick(this.#agentsOf(["flood"]));
    await tally.run("Restart", () => client.restart({ name: agent.name }, CALL));
  }

  /** Undeploy (SIGTERM ignored → SIGKILL after stop_timeout) then Deploy of a stubborn agent. */
  async #termCycle(): Promise<void> {
    const { client, rng, tally } = this.#d;
    const agent = rng.pick(this.#agentsOf(["ignore-term"]));
    await tally.run("Undeploy", () => client.undeploy({ name: agent.name }, CALL));
    await tally.run("Deploy", () => client.deploy({ name: agent.name }, CALL));
  }

  /**
   * SIGKILL of the daemon, sometimes a kill -9 of one agent while it is down, then the daemon
   * again on the same state dir: every agent whose process survived must be adopted (same pid),
   * none started twice.
   */
  async restartDaemon(): Promise<void> {
    const { client, daemon, rng, tally, marker, violations, log, checkStrays } = this.#d;
    this.#paused = true;
    this.#count("daemon restart");
    try {
      const before = await tally.run("ListAgents", () => client.listAgents({}, CALL));
      const live = new Map<string, number>();
      for (const a of before?.agents ?? []) {
        if (a.state === AgentState.RUNNING && isOurs(a.pid, marker)) live.set(a.name, a.pid);
      }
      await daemon.kill();
      let killedMeanwhile: string | undefined;
      if (live.size > 0 && rng.next() < 0.5) {
        const [name, pid] = rng.pick([...live.entries()]);
        if (isOurs(pid, marker)) {
          process.kill(pid, "SIGKILL");
          killedMeanwhile = name;
        }
      }
      await delay(rng.int(200, 1_500));
      await daemon.start();
      log(
        `daemon restarted (incarnation ${daemon.incarnations}); ${live.size} agents were running${killedMeanwhile === undefined ? "" : `, ${killedMeanwhile} killed while it was down`}`,
      );
      // Give restoreState time to adopt and to restart the dead.
      await delay(3_000);
      const after = await tally.run("ListAgents", () => client.listAgents({}, CALL));
      const byName = new Map((after?.agents ?? []).map((a) => [a.name, a]));
      for (const [name, pid] of live) {
        if (name === killedMeanwhile || !isAlive(pid)) continue;
        this.adoptionChecks += 1;
        const now = byName.get(name);
        if (now?.pid === pid) {
          this.adopted += 1;
          continue;
        }
        // The old process is alive but the daemon reports another pid (or none): a duplicate or an orphan.
        if (isAlive(pid)) {
          violations.push(
            `daemon restart ${daemon.incarnations}: ${name} pid ${pid} survived but is reported as ${now === undefined ? "unknown" : `${stateName(now.state)} pid ${now.pid} (${now.stateReason})`}`,
          );
        }
      }
      await checkStrays(`after daemon restart ${daemon.incarnations}`);
    } finally {
      this.#paused = false;
    }
  }
}
