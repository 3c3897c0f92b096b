import { describe, expect, it } from "vitest";
import { parseAgentArgs } from "../../src/agent/args.ts";

describe("parseAgentArgs", () => {
  it("reads --server --port --agent and defaults --host to 127.0.0.1", () => {
    expect(parseAgentArgs(["--server", "--port", "8100", "--agent", "a/agent.toml"])).toEqual({
      kind: "run",
      options: { port: 8100, agentPath: "a/agent.toml", host: "127.0.0.1" },
    });
  });

  it("accepts --flag=value, port 0 and an IPv6 host in any order", () => {
    expect(parseAgentArgs(["--host", "::1", "--agent=x.json", "--port=0", "--server"])).toEqual({
      kind: "run",
      options: { port: 0, agentPath: "x.json", host: "::1" },
    });
  });

  it("answers help for -h and --help", () => {
    expect(parseAgentArgs(["--server", "-h"])).toEqual({ kind: "help" });
    expect(parseAgentArgs(["--help"])).toEqual({ kind: "help" });
  });

  it.each([
    [["--port", "1", "--agent", "a"], "--server is required"],
    [["--server", "--agent", "a"], "--port is required"],
    [["--server", "--port", "1"], "--agent is required"],
    [["--server", "--port", "65536", "--agent", "a"], "--port must be an integer"],
    [["--server", "--port", "-1", "--agent", "a"], "--port must be an integer"],
    [["--server", "--port", "8a", "--agent", "a"], "--port must be an integer"],
    [["--server", "--port", "--agent", "a"], "--port needs a value"],
    [["--server", "--port", "1", "--agent"], "--agent needs a path"],
    [["--server", "--port", "1", "--agent", "a", "--host"], "--host needs a value"],
    [["--server", "--port", "1", "--agent", "a", "--verbose"], 'unknown option "--verbose"'],
    [["--server", "--port", "1", "--agent", "a", "extra"], 'unexpected argument "extra"'],
    [["--server=yes", "--port", "1", "--agent", "a"], "--server takes no value"],
  ])("reports a usage error for %j", (argv, message) => {
    const result = parseAgentArgs(argv);
    expect(result.kind).toBe("error");
    expect(result.kind === "error" ? result.message : "").toContain(message);
  });
});
