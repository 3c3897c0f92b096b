/**
 * The one fixture agent every tool supervises (tests/fixtures/fault-agent.mjs), the Node binary
 * that runs it, and the description of an agent that the tools turn into their own config.
 */
import { fileURLToPath } from "node:url";

/** Absolute path of the repository root. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The fault-agent fixture (plain JS, starts in tens of milliseconds). */
export const FIXTURE = fileURLToPath(
  new URL("../../tests/fixtures/fault-agent.mjs", import.meta.url),
);

/** The flooding fixture (tests/fixtures/flood-agent.mjs): numbered lines at a set rate, with stats. */
export const FLOOD_FIXTURE = fileURLToPath(
  new URL("../../tests/fixtures/flood-agent.mjs", import.meta.url),
);

/** The Node binary running the harness (Node 24): every tool runs the fixture on this same binary. */
export const NODE = process.execPath;

/** Environment variable put into every agent the harness starts, for leak scans of /proc. */
export const RUN_MARKER_VAR = "ATOLL_BENCH_RUN";

/** One agent as the harness wants it supervised; each tool renders it into its own config. */
export interface AgentSpec {
  /** Program / agent name: `[A-Za-z0-9_.-]`, also a valid PM2 and supervisord name. */
  readonly name: string;
  /** Fixed port the fixture listens on (`--port`). */
  readonly port: number;
  /** Fault modes of the fixture (`FAULT`), none for a well-behaved agent. */
  readonly faults?: readonly string[];
  /** Extra environment for the fixture (`CRASH_AFTER_MS`, `MARK_FILE`, ...). */
  readonly env?: Readonly<Record<string, string>>;
  /** The fixture script; default {@link FIXTURE}. Both take `--port N`. */
  readonly script?: string;
  /** Log rotation each tool is asked for, when the scenario cares (bytes per file, old files kept). */
  readonly logs?: { readonly maxBytes: number; readonly keep: number };
}

/** argv of the fixture for `spec` (without the Node binary). */
export function fixtureArgs(spec: AgentSpec): string[] {
  return [spec.script ?? FIXTURE, "--port", String(spec.port)];
}

/** The environment every tool passes to the agent on top of what it inherits. */
export function fixtureEnv(spec: AgentSpec, runMarker: string): Record<string, string> {
  const env: Record<string, string> = {
    [RUN_MARKER_VAR]: runMarker,
    ATOLL_AGENT_NAME: spec.name,
    ...spec.env,
  };
  if (spec.faults !== undefined && spec.faults.length > 0) env.FAULT = spec.faults.join(",");
  return env;
}

/** `count` agents named `prefix000...` on consecutive ports from `basePort`. */
export function makeAgents(
  count: number,
  basePort: number,
  init: { readonly prefix?: string; readonly faults?: readonly string[] } = {},
): AgentSpec[] {
  const prefix = init.prefix ?? "a";
  return Array.from({ length: count }, (_, i) => ({
    name: `${prefix}${String(i).padStart(3, "0")}`,
    port: basePort + i,
    ...(init.faults !== undefined && { faults: init.faults }),
  }));
}
