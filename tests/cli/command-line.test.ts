import { describe, expect, it } from "vitest";
import {
  DEFAULT_LOG_LINES,
  DEFAULT_SERVER,
  mainUsage,
  parseCommandLine,
  parseShellCommand,
} from "../../src/cli/command-line.ts";

const parse = (argv: string[], env: Record<string, string> = {}) => parseCommandLine(argv, env);

function client(argv: string[], env: Record<string, string> = {}) {
  const line = parse(argv, env);
  if (line.kind !== "client")
    throw new Error(`expected a client command, got ${JSON.stringify(line)}`);
  return line;
}

describe("parseCommandLine", () => {
  it("takes the agent name of deploy and the default server", () => {
    const line = client(["deploy", "greeter"]);
    expect(line.command).toEqual({ name: "deploy", agent: "greeter", timeoutMs: undefined });
    expect(line.options.server).toBe(DEFAULT_SERVER);
    expect(line.options.json).toBe(false);
    expect(line.options.connectTimeoutMs).toBe(5000);
  });

  it("accepts global options before and after the command", () => {
    const before = client(["--server", "unix:/run/a.sock", "--json", "status", "x"]);
    const after = client(["status", "x", "--server=unix:/run/a.sock", "--json"]);
    expect(before).toEqual(after);
    expect(before.options.server).toBe("unix:/run/a.sock");
    expect(before.options.json).toBe(true);
  });

  it("reads the server address from the environment, the flag winning", () => {
    const env = { ATOLL_DEPLOY_SERVER: "10.0.0.1:7000" };
    expect(client(["list"], env).options).toMatchObject({ server: "10.0.0.1:7000" });
    expect(client(["list", "--server", "h:1"], env).options.server).toBe("h:1");
  });

  it("parses install with --force, --start and --timeout, and remove", () => {
    expect(
      client(["install", "./greeter", "--force", "--start", "--timeout", "30"]).command,
    ).toEqual({
      name: "install",
      path: "./greeter",
      force: true,
      start: true,
      timeoutMs: 30_000,
    });
    expect(client(["install", "pkg.zip"]).command).toMatchObject({ force: false, start: false });
    expect(client(["remove", "greeter"]).command).toEqual({
      name: "remove",
      agent: "greeter",
      timeoutMs: undefined,
    });
    expect(parse(["install"])).toMatchObject({
      kind: "usage-error",
      message: "install: missing package directory or archive",
    });
    expect(parse(["remove", "a", "b"])).toMatchObject({ kind: "usage-error" });
    expect(parseShellCommand(["install", "x"])).toEqual({ error: 'unknown command "install"' });
  });

  it("parses logs -f -n and its default", () => {
    expect(client(["logs", "a", "-f", "-n", "20"]).command).toEqual({
      name: "logs",
      agent: "a",
      follow: true,
      lines: 20,
    });
    expect(client(["logs", "a"]).command).toMatchObject({
      follow: false,
      lines: DEFAULT_LOG_LINES,
    });
  });

  it("parses watch names, its retry bound and deploy's timeout", () => {
    expect(client(["watch", "a", "b", "--max-retries", "2"]).command).toEqual({
      name: "watch",
      agents: ["a", "b"],
      maxRetries: 2,
      allContexts: false,
    });
    expect(client(["deploy", "a", "--timeout", "1.5"]).command).toMatchObject({ timeoutMs: 1500 });
  });

  it("accepts the shell's spelling `list deployment`", () => {
    expect(client(["list", "deployment"]).command).toEqual({ name: "list", allContexts: false });
  });

  it.each([
    [["deploy"], "deploy: missing agent name"],
    [["status", "a", "b"], 'status: unexpected argument "b"'],
    [["frobnicate"], 'unknown command "frobnicate"'],
    [["list", "--bogus"], "list: Unknown option '--bogus'"],
    [["deploy", "a", "--follow"], "deploy: Unknown option '--follow'"],
    [["logs", "a", "-n", "ten"], 'logs: -n/--lines must be a whole number, not "ten"'],
    [["list", "--connect-timeout", "0"], "list: --connect-timeout must be a positive number"],
    [["list", "--tls-cert", "c.pem"], "list: --tls-cert and --tls-key go together"],
    [[], "missing command"],
    [["--json", "serve"], "serve takes its flags after the word serve"],
  ])("reports %j as a usage error", (argv, message) => {
    const line = parse(argv);
    expect(line.kind).toBe("usage-error");
    if (line.kind === "usage-error") expect(line.message).toContain(message);
  });

  it("answers --help, -h, help <command> and --version", () => {
    expect(parse(["--help"])).toEqual({ kind: "help", text: mainUsage() });
    const deployHelp = parse(["deploy", "-h"]);
    expect(deployHelp.kind).toBe("help");
    if (deployHelp.kind === "help")
      expect(deployHelp.text).toContain("usage: atoll-deploy deploy <name>");
    expect(parse(["help", "logs"])).toMatchObject({ kind: "help" });
    expect(parse(["--version"])).toEqual({ kind: "version" });
  });

  it("hands everything after serve to the daemon untouched", () => {
    expect(parse(["serve", "--listen", "unix:/x", "--bogus"])).toEqual({
      kind: "serve",
      argv: ["--listen", "unix:/x", "--bogus"],
    });
    expect(parse(["help", "serve"])).toEqual({ kind: "serve", argv: ["--help"] });
  });

  it("lists every command in the main help", () => {
    const text = mainUsage();
    for (const command of [
      "serve",
      "deploy",
      "undeploy",
      "restart",
      "status",
      "list",
      "watch",
      "logs",
      "shell",
    ]) {
      expect(text).toContain(`  ${command}`);
    }
  });
});

describe("parseShellCommand", () => {
  it("parses the commands the shell runs", () => {
    expect(parseShellCommand(["deploy", "a"])).toEqual({
      command: { name: "deploy", agent: "a", timeoutMs: undefined },
    });
    expect(parseShellCommand(["list", "deployment"])).toEqual({
      command: { name: "list", allContexts: false },
    });
    expect(parseShellCommand(["logs", "a", "-n", "5"])).toMatchObject({ command: { lines: 5 } });
  });

  it("explains mistakes with the usage of the command", () => {
    expect(parseShellCommand(["status"])).toEqual({
      error: "status: missing agent name (usage: status <name>)",
    });
    expect(parseShellCommand(["watch"])).toEqual({ error: 'unknown command "watch"' });
    expect(parseShellCommand(["deploy", "a", "--json"])).toMatchObject({
      error: expect.stringContaining("Unknown option '--json'"),
    });
  });
});
