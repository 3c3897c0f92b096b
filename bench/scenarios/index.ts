/** Every scenario by the name used on the command line, in run order. */
import type { BenchContext } from "../lib/context.ts";
import type { Tool } from "../tools/tool.ts";
import { coldStart } from "./cold-start.ts";
import { crashLoop } from "./crash-loop.ts";
import { crashRecovery } from "./crash-recovery.ts";
import { watchFanout } from "./fanout.ts";
import { fleet } from "./fleet.ts";
import { flood } from "./flood.ts";
import { stopAgents } from "./stop.ts";

export interface Scenario {
  readonly name: string;
  readonly aliases: readonly string[];
  readonly description: string;
  /** Skipped by --quick unless named explicitly. */
  readonly full: boolean;
  readonly run: (ctx: BenchContext, tools: readonly Tool[]) => Promise<void>;
}

export const SCENARIOS: readonly Scenario[] = [
  {
    name: "cold",
    aliases: ["cold-start"],
    description: "cold start of 10 and 50 agents to all healthy",
    full: false,
    run: coldStart,
  },
  {
    name: "crash",
    aliases: ["crash-recovery"],
    description: "kill -9 → new process answering /status (median, worst)",
    full: false,
    run: crashRecovery,
  },
  {
    name: "status",
    aliases: ["fleet", "rss", "latency"],
    description:
      "daemon RSS idle / 50 / 100 running; status latency p50/p99 and throughput with 50 and 100",
    full: false,
    run: fleet,
  },
  {
    name: "stop",
    aliases: [],
    description: "stop 50 agents, graceful and ignoring SIGTERM (2 s grace)",
    full: false,
    run: stopAgents,
  },
  {
    name: "crashloop",
    aliases: ["crash-loop"],
    description: "restarts of immediately crashing agents over 30 s (skipped by --quick)",
    full: true,
    run: crashLoop,
  },
  {
    name: "flood",
    aliases: ["logs", "output"],
    description:
      "one agent writing 10 MB/s for 30 s: peak disk of its logs, bytes written, write blocking, daemon CPU and RSS",
    full: false,
    run: flood,
  },
  {
    name: "fanout",
    aliases: ["watch"],
    description: "WatchHealth: one change to 1,000 streams, p50/p99 (atoll only)",
    full: false,
    run: watchFanout,
  },
];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name || s.aliases.includes(name));
}
