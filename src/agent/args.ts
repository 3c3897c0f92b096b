/**
 * Command-line parsing for `atoll-agent` (SPEC §8). Pure: takes the argument list, returns a
 * result; printing and exit codes belong to `main.ts`.
 */

/** Options of `atoll-agent --server --port N --agent PATH [--host H]`. */
export interface AgentCliOptions {
  /** TCP port to bind; 0 = any free port (the bound port is printed in the readiness line). */
  readonly port: number;
  /** Path of `agent.toml` / `agent.json`, as given (resolved by the definition reader). */
  readonly agentPath: string;
  /** Address to bind; default `127.0.0.1`. */
  readonly host: string;
}

export type AgentArgsResult =
  | { readonly kind: "run"; readonly options: AgentCliOptions }
  | { readonly kind: "help" }
  | { readonly kind: "error"; readonly message: string };

export const AGENT_USAGE =
  "Usage: atoll-agent --server --port N --agent PATH [--host H]\n" +
  "  --server       run in server mode (the only mode of this runtime; required)\n" +
  "  --port N       TCP port to listen on, 0-65535 (0 = any free port)\n" +
  "  --agent PATH   agent definition file (agent.toml or agent.json)\n" +
  "  --host H       address to bind (default 127.0.0.1)\n" +
  "  -h, --help     show this help";

const DEFAULT_HOST = "127.0.0.1";

/**
 * Parses `argv` (without the node and script entries). Accepts `--flag value` and
 * `--flag=value`. Never throws: problems come back as `{kind: "error"}` with a one-line message.
 */
export function parseAgentArgs(argv: readonly string[]): AgentArgsResult {
  let server = false;
  let port: number | undefined;
  let agentPath: string | undefined;
  let host: string | undefined;

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "-h" || arg === "--help") return { kind: "help" };

    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const takeValue = (): string | undefined => {
      if (eq !== -1) return arg.slice(eq + 1);
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) return undefined;
      i++;
      return next;
    };

    switch (flag) {
      case "--server":
        if (eq !== -1) return error("--server takes no value");
        server = true;
        break;
      case "--port": {
        const value = takeValue();
        if (value === undefined) return error("--port needs a value");
        if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) {
          return error(`--port must be an integer from 0 to 65535, got "${value}"`);
        }
        port = Number(value);
        break;
      }
      case "--agent": {
        const value = takeValue();
        if (value === undefined || value === "") return error("--agent needs a path");
        agentPath = value;
        break;
      }
      case "--host": {
        const value = takeValue();
        if (value === undefined || value === "") return error("--host needs a value");
        host = value;
        break;
      }
      default:
        return error(
          arg.startsWith("-") ? `unknown option "${flag}"` : `unexpected argument "${arg}"`,
        );
    }
  }

  if (!server) return error("--server is required (server mode is the only mode)");
  if (port === undefined) return error("--port is required");
  if (agentPath === undefined) return error("--agent is required");
  return { kind: "run", options: { port, agentPath, host: host ?? DEFAULT_HOST } };
}

function error(message: string): AgentArgsResult {
  return { kind: "error", message };
}
