/**
 * The soak's 20 agents: a mix of well-behaved and faulty fixture agents, their definitions, and
 * what the restart policy allows each kind to be in once the chaos stops.
 */
import type { AgentSpec } from "../lib/fixture.ts";

export type AgentKind = "normal" | "hang" | "ignore-term" | "flood" | "crash-after" | "grandchild";

export interface SoakAgent extends AgentSpec {
  readonly kind: AgentKind;
  /** `[deployment]` keys added to the bench defaults for this agent. */
  readonly deployment: Readonly<Record<string, number | boolean | string>>;
}

/** Probing fast enough that hangs are noticed within the soak. */
const PROBING = { health_check_interval: 1, health_timeout: 0.5, failure_threshold: 2 } as const;

const KINDS: readonly {
  kind: AgentKind;
  prefix: string;
  count: number;
  faults: readonly string[];
  env: Readonly<Record<string, string>>;
  deployment: Readonly<Record<string, number | boolean | string>>;
}[] = [
  { kind: "normal", prefix: "n", count: 8, faults: [], env: {}, deployment: {} },
  {
    kind: "hang",
    prefix: "h",
    count: 3,
    faults: ["hang-after"],
    env: { FAIL_AFTER_MS: "8000" },
    deployment: {},
  },
  {
    kind: "ignore-term",
    prefix: "t",
    count: 3,
    faults: ["ignore-sigterm"],
    env: {},
    deployment: { stop_timeout: 1 },
  },
  {
    kind: "flood",
    prefix: "f",
    count: 2,
    faults: ["flood"],
    env: { FLOOD_BYTES: String(12 * 1024 * 1024) },
    deployment: {},
  },
  {
    kind: "crash-after",
    prefix: "c",
    count: 2,
    faults: ["crash-after"],
    env: { CRASH_AFTER_MS: "4000" },
    deployment: {},
  },
  { kind: "grandchild", prefix: "g", count: 2, faults: ["grandchild"], env: {}, deployment: {} },
];

export function soakFleet(basePort: number): SoakAgent[] {
  const agents: SoakAgent[] = [];
  for (const k of KINDS) {
    for (let i = 0; i < k.count; i++) {
      agents.push({
        name: `${k.prefix}${String(i).padStart(2, "0")}`,
        port: basePort + agents.length,
        kind: k.kind,
        faults: k.faults,
        env: k.env,
        deployment: { ...PROBING, ...k.deployment },
      });
    }
  }
  return agents;
}

/** Agents left deployed at the end; the SIGTERM-ignoring ones are undeployed (exercising SIGKILL). */
export function finallyDeployed(agent: SoakAgent): boolean {
  return agent.kind !== "ignore-term";
}

/**
 * States the policy allows once the chaos has stopped and the final Deploy/Undeploy calls have
 * returned: agents that fault by themselves keep cycling through restarts (their restart count
 * resets after `stable_after` healthy seconds), every other deployed agent is RUNNING.
 */
export function allowedFinalStates(agent: SoakAgent): readonly string[] {
  if (!finallyDeployed(agent)) return ["STOPPED"];
  if (agent.kind === "hang" || agent.kind === "crash-after")
    return ["RUNNING", "STARTING", "BACKOFF"];
  return ["RUNNING"];
}
