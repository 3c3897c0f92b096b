import { describe, expect, it } from "vitest";
import { DEFAULT_COMMAND } from "../../src/config/agent-definition.ts";
import { invalid, json, TOML_FILE, toml, valid } from "./definition-helpers.ts";

describe("key types and ranges", () => {
  const cases: [string, string, string][] = [
    ["agent.version", "[agent]\nversion = 1", "must be a string, got 1"],
    ["agent.description", "[agent]\ndescription = true", "must be a string, got true"],
    [
      "agent.capabilities",
      '[agent]\ncapabilities = "chat"',
      'must be a list of strings, got "chat"',
    ],
    ["agent.capabilities[1]", '[agent]\ncapabilities = ["a", 2]', "must be a string, got 2"],
    ["agent", 'agent = "x"', 'must be a table, got "x"'],
    ["deployment", "deployment = 3", "must be a table, got 3"],
    ["resources", "resources = [1]", "must be a table, got an array"],
    [
      "deployment.command",
      '[deployment]\ncommand = "atoll-agent --server"',
      "must be a list of strings",
    ],
    ["deployment.command", "[deployment]\ncommand = []", "must not be empty"],
    ["deployment.command[1]", '[deployment]\ncommand = ["x", 1]', "must be a string, got 1"],
    ["deployment.command[0]", '[deployment]\ncommand = ["", "x"]', "the program must not be empty"],
    [
      "deployment.command[0]",
      '[deployment]\ncommand = ["a\\u0000b"]',
      "must not contain a NUL character",
    ],
    ["deployment.env", '[deployment]\nenv = ["A=1"]', "must be a table of strings, got an array"],
    ["deployment.env.PORTS", "[deployment.env]\nPORTS = 8080", "must be a string, got 8080"],
    ["deployment.env.A", "[deployment.env]\nA = { b = 1 }", "must be a string, got an object"],
    [
      "deployment.env.A=B",
      '[deployment.env]\n"A=B" = "x"',
      "is not a valid environment variable name",
    ],
    [
      "deployment.port",
      "[deployment]\nport = 70000",
      "must be an integer between 1 and 65535, or 0 to lease a free port, got 70000",
    ],
    ["deployment.port", "[deployment]\nport = -1", "got -1"],
    ["deployment.port", "[deployment]\nport = 80.5", "got 80.5"],
    ["deployment.port", '[deployment]\nport = "8080"', 'got "8080"'],
    ["deployment.autostart", "[deployment]\nautostart = 1", "must be true or false, got 1"],
    [
      "deployment.auto_restart",
      '[deployment]\nauto_restart = "false"',
      'must be true or false, got "false"',
    ],
    [
      "deployment.max_restarts",
      "[deployment]\nmax_restarts = -1",
      "must be a non-negative integer, got -1",
    ],
    ["deployment.max_restarts", "[deployment]\nmax_restarts = 1.5", "got 1.5"],
    [
      "deployment.failure_threshold",
      "[deployment]\nfailure_threshold = 0",
      "must be a positive integer, got 0",
    ],
    [
      "deployment.restart_delay",
      "[deployment]\nrestart_delay = -1",
      "must be 0 (restart at once) or a number of seconds between 0.001 and 2147483, got -1",
    ],
    [
      "deployment.health_timeout",
      "[deployment]\nhealth_timeout = 0",
      "must be a number of seconds between 0.001 and 2147483, got 0",
    ],
    ["deployment.start_timeout", "[deployment]\nstart_timeout = 0", "got 0"],
    ["deployment.stable_after", '[deployment]\nstable_after = "60s"', 'got "60s"'],
    ["deployment.health_timeout", "[deployment]\nhealth_timeout = nan", "got NaN"],
    [
      "deployment.health_check_interval",
      "[deployment]\nhealth_check_interval = inf",
      "got Infinity",
    ],
    ["resources.health_check_interval", "[resources]\nhealth_check_interval = -5", "got -5"],
    ["deployment.start_timeout", "[deployment]\nstart_timeout = 3000000", "got 3000000"],
    ["deployment.stop_timeout", "[deployment]\nstop_timeout = 0.0001", "got 0.0001"],
    ["deployment.stop_timeout", "[deployment]\nstop_timeout = 1979-05-27", "got 1979-05-27"],
    [
      "deployment.health_path",
      '[deployment]\nhealth_path = "status"',
      'must be "" (no HTTP probe) or a path starting with "/"',
    ],
    ["deployment.health_path", '[deployment]\nhealth_path = "/a b"', 'got "/a b"'],
    ["deployment.health_path", "[deployment]\nhealth_path = 200", "must be a string, got 200"],
    ["resources.memory_limit", '[resources]\nmemory_limit = "512"', 'Invalid memory format "512"'],
    [
      "resources.memory_limit",
      "[resources]\nmemory_limit = 536870912",
      "Invalid memory format 536870912",
    ],
    ["resources.memory_limit", '[resources]\nmemory_limit = "lots"', "Invalid memory format"],
    [
      "deployment.log_max_bytes",
      "[deployment]\nlog_max_bytes = 0",
      'must be a positive number of bytes or a size with a unit such as "100MiB", got 0',
    ],
    ["deployment.log_max_bytes", "[deployment]\nlog_max_bytes = 1.5", "got 1.5"],
    ["deployment.log_max_bytes", '[deployment]\nlog_max_bytes = "ten"', 'got "ten"'],
    ["deployment.log_max_bytes", "[deployment]\nlog_max_bytes = true", "got true"],
    [
      "deployment.log_keep",
      "[deployment]\nlog_keep = -1",
      "must be an integer between 0 and 1000, got -1",
    ],
    ["deployment.log_keep", "[deployment]\nlog_keep = 1001", "got 1001"],
    ["deployment.log_keep", '[deployment]\nlog_keep = "3"', 'got "3"'],
  ];
  it.each(cases)("reports %s for %j", (key, text, problem) => {
    const result = invalid(toml(text));
    expect(result.message).toContain(`${TOML_FILE}: ${key}: `);
    expect(result.message).toContain(problem);
    expect(result.message).not.toContain("\n");
  });

  it("accepts fractional seconds and converts them to milliseconds", () => {
    const definition = valid(toml("[deployment]\nrestart_delay = 0.25\nstop_timeout = 1.0015"));
    expect(definition.deployment.restartDelayMs).toBe(250);
    expect(definition.deployment.stopTimeoutMs).toBe(1002);
  });

  it("accepts 0 where it has a plain meaning: at once, SIGKILL at once, the first healthy probe", () => {
    const { deployment, warnings } = valid(
      toml("[deployment]\nrestart_delay = 0\nstop_timeout = 0\nstable_after = 0"),
    );
    expect(deployment).toMatchObject({ restartDelayMs: 0, stopTimeoutMs: 0, stableAfterMs: 0 });
    expect(warnings).toEqual([]);
  });

  it("warns about a restart_delay beyond the backoff cap instead of changing it silently", () => {
    const definition = valid(toml("[deployment]\nrestart_delay = 45"));
    expect(definition.deployment.restartDelayMs).toBe(45_000);
    expect(definition.warnings).toEqual([
      "deployment.restart_delay: 45 s is above the 30 s cap of the restart backoff; restarts wait at most 30 s",
    ]);
  });

  it('accepts health_path "" to turn HTTP probing off', () => {
    expect(valid(toml('[deployment]\nhealth_path = ""')).deployment.healthPath).toBe("");
  });

  it("accepts a fixed port and integer-valued floats", () => {
    expect(valid(toml("[deployment]\nport = 8200")).deployment.port).toBe(8200);
    expect(valid(toml("[deployment]\nmax_restarts = 2.0")).deployment.maxRestarts).toBe(2);
  });

  it("reads log_max_bytes as bytes or a size with a unit, and log_keep, leaving both to the server by default", () => {
    const sized = valid(toml('[deployment]\nlog_max_bytes = "10MiB"\nlog_keep = 0')).deployment;
    expect([sized.logMaxBytes, sized.logKeep]).toEqual([10 * 1024 * 1024, 0]);
    expect(valid(toml("[deployment]\nlog_max_bytes = 65536")).deployment.logMaxBytes).toBe(65_536);
    expect(valid(toml('[deployment]\nlog_max_bytes = "4096"')).deployment.logMaxBytes).toBe(4096);
    expect(valid(json({ deployment: { log_max_bytes: "1.5KB" } })).deployment.logMaxBytes).toBe(
      1500,
    );
    const defaults = valid(toml("[deployment]\n")).deployment;
    expect([defaults.logMaxBytes, defaults.logKeep]).toEqual([undefined, undefined]);
    expect(valid(toml("[deployment]\nlog_keep = 1000")).warnings).toEqual([]);
  });

  it("accepts max_restarts 0 (never restart)", () => {
    expect(valid(toml("[deployment]\nmax_restarts = 0")).deployment.maxRestarts).toBe(0);
  });

  it("warns about env variables the server always sets and about unknown placeholders", () => {
    const definition = valid(
      toml(
        '[deployment]\ncommand = ["run", "--port={prot}", "{}", "{\\"json\\": 1}"]\n[deployment.env]\nPORT = "1"\n',
      ),
    );
    expect(definition.warnings).toEqual([
      "deployment.command[1]: unknown placeholder {prot} is passed as is (known: {port} {host} {config} {name} {dir})",
      "deployment.env.PORT is ignored: the server always sets PORT",
    ]);
  });

  it("keeps an env key named __proto__ as a plain key", () => {
    const definition = valid(json({ deployment: { env: { ["__proto__"]: "x", A: "1" } } }));
    expect(Object.keys(definition.deployment.env).sort()).toEqual(["A", "__proto__"]);
    expect(Object.getPrototypeOf(definition.deployment.env)).toBe(Object.prototype);
  });

  it("does not mistake inherited properties for keys", () => {
    const definition = valid(toml("[deployment]\n"));
    expect(definition.deployment.command).toEqual(DEFAULT_COMMAND);
    expect(valid(json({ agent: {} })).name).toBe("demo");
  });
});
