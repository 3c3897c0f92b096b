import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { DEFAULT_COMMAND } from "../../src/config/agent-definition.ts";
import { parseAgentDefinition } from "../../src/config/parse-definition.ts";
import { invalid, TOML_FILE, toml, valid } from "./definition-helpers.ts";

describe("parseAgentDefinition with TOML", () => {
  it("fills every default for an empty file and takes the directory name", () => {
    const definition = valid(toml(""));
    expect(definition).toEqual({
      name: "demo",
      version: "",
      description: "",
      capabilities: [],
      configPath: TOML_FILE,
      dir: "/srv/atoll_agents/demo",
      deployment: {
        command: DEFAULT_COMMAND,
        env: {},
        port: 0,
        autostart: false,
        autoRestart: undefined,
        maxRestarts: undefined,
        restartDelayMs: 1000,
        stableAfterMs: 60_000,
        healthPath: "/status",
        healthCheckIntervalMs: undefined,
        healthTimeoutMs: 10_000,
        failureThreshold: 3,
        startTimeoutMs: 30_000,
        stopTimeoutMs: 10_000,
      },
      resources: { memoryLimitBytes: undefined },
      kubernetes: {
        image: undefined,
        namespace: undefined,
        cpu: undefined,
        gpus: 0,
        nodeSelector: {},
      },
      warnings: [],
    });
  });

  it("reads every key of an upstream definition and accepts the agent program's sections silently", async () => {
    const text = await readFile(new URL("fixtures/upstream-agent.toml", import.meta.url), "utf8");
    const definition = valid(toml(text));
    expect(definition.name).toBe("research-assistant");
    expect(definition.version).toBe("2.1.0");
    expect(definition.description).toBe("Researches with tools");
    expect(definition.capabilities).toEqual(["research", "summarization"]);
    expect(definition.deployment).toEqual({
      command: ["python", "-m", "atoll", "--server", "--port", "{port}", "--agent", "{config}"],
      env: { ATOLL_LOG_LEVEL: "debug", EMPTY: "" },
      port: 0,
      autostart: true,
      autoRestart: true,
      maxRestarts: 5,
      restartDelayMs: 500,
      stableAfterMs: 120_000,
      healthPath: "/healthz",
      healthCheckIntervalMs: 15_000,
      healthTimeoutMs: 2500,
      failureThreshold: 2,
      startTimeoutMs: 45_000,
      stopTimeoutMs: 3000,
    });
    expect(definition.resources.memoryLimitBytes).toBe(1.5 * 2 ** 30);
    expect(definition.warnings).toEqual([]);
  });

  it("freezes the definition deeply", () => {
    const definition = valid(
      toml(
        '[agent]\ncapabilities = ["a"]\n[deployment]\ncommand = ["x"]\n[deployment.env]\nA = "1"',
      ),
    );
    expect(Object.isFrozen(definition)).toBe(true);
    expect(Object.isFrozen(definition.capabilities)).toBe(true);
    expect(Object.isFrozen(definition.deployment)).toBe(true);
    expect(Object.isFrozen(definition.deployment.command)).toBe(true);
    expect(Object.isFrozen(definition.deployment.env)).toBe(true);
    expect(Object.isFrozen(definition.resources)).toBe(true);
    expect(Object.isFrozen(definition.warnings)).toBe(true);
  });

  it("prefers deployment.health_check_interval over the one in resources and warns when they differ", () => {
    const definition = valid(
      toml("[deployment]\nhealth_check_interval = 5\n[resources]\nhealth_check_interval = 7"),
    );
    expect(definition.deployment.healthCheckIntervalMs).toBe(5000);
    expect(definition.warnings).toEqual([
      "resources.health_check_interval is ignored: deployment.health_check_interval is set",
    ]);
  });

  it("reports a syntax error with its line and column", () => {
    const result = invalid(toml('[agent]\nname = "demo"\ncapabilities = ["a",\n'));
    expect(result.message).toMatch(
      /^\/srv\/atoll_agents\/demo\/agent\.toml: line \d+, column \d+: invalid TOML: /,
    );
    expect(result.message).not.toContain("\n");
    expect(result.name).toBe("demo");
  });

  it("reports the line of a redefined table", () => {
    const result = invalid(toml("[deployment]\nport = 1\n\n[deployment]\nport = 2\n"));
    expect(result.message).toContain("line 4");
  });

  it("turns unknown keys of agent, deployment and resources into warnings with a suggestion", () => {
    const definition = valid(
      toml(
        '[agent]\nowner = "me"\n[deployment]\nprot = 8200\nfoo = 1\n[resources]\ncpu_limit = 2\n',
      ),
    );
    expect(definition.warnings).toEqual([
      "unknown key agent.owner",
      "unknown key deployment.prot (did you mean deployment.port?)",
      "unknown key deployment.foo",
      "unknown key resources.cpu_limit",
    ]);
  });

  it("accepts unknown top-level sections and keys silently", () => {
    const definition = valid(toml('[telemetry]\nendpoint = "x"\n[llm]\nmodel = 3\n'));
    expect(definition.warnings).toEqual([]);
  });

  it("warns that a top-level name is ignored in TOML", () => {
    const definition = valid(toml('name = "other"\n'));
    expect(definition.name).toBe("demo");
    expect(definition.warnings).toEqual([
      "top-level key name is ignored: identity belongs in the agent section",
    ]);
  });

  it("reports every problem of a file in one message", () => {
    const result = invalid(toml('[deployment]\nport = "abc"\nstart_timeout = -1\n'));
    expect(result.message).toBe(
      `${TOML_FILE}: deployment.port: must be an integer between 1 and 65535, or 0 to lease a free port, got "abc"; deployment.start_timeout: must be a number of seconds between 0.001 and 2147483, got -1`,
    );
  });

  it("keeps the declared name of an invalid definition", () => {
    const result = invalid(toml('[agent]\nname = "real"\n[deployment]\nautostart = "yes"\n'));
    expect(result.name).toBe("real");
    expect(result.message).toBe(
      `${TOML_FILE}: deployment.autostart: must be true or false, got "yes"`,
    );
  });

  it("keeps warnings of an invalid definition", () => {
    const result = invalid(toml("[deployment]\nport = -1\nbogus = 1\n"));
    expect(result.warnings).toEqual(["unknown key deployment.bogus"]);
  });
});

describe("agent names", () => {
  it.each([
    ["../etc", "path traversal"],
    ["a".repeat(100), "100 characters"],
    ["my agent", "a space"],
    ["bad\u0007bell", "a control character"],
    ["line\nbreak", "a newline"],
    ["-dash", "a leading dash"],
    [".hidden", "a leading dot"],
    ["ünïcode", "non-ASCII letters"],
    ["a/b", "a slash"],
  ])("refuses the declared name %j (%s)", (name) => {
    const result = invalid(toml(`[agent]\nname = ${JSON.stringify(name)}\n`));
    expect(result.message).toMatch(/agent\.name: invalid agent name /);
    expect([...result.message].some((char) => char.charCodeAt(0) < 0x20)).toBe(false);
    expect(result.name).toBe("demo");
  });

  it("accepts a 63-character name and refuses a 64-character one", () => {
    expect(valid(toml(`[agent]\nname = "${"a".repeat(63)}"`)).name).toBe("a".repeat(63));
    expect(invalid(toml(`[agent]\nname = "${"a".repeat(64)}"`)).message).toContain(
      "invalid agent name",
    );
  });

  it("falls back to the directory name when the name is empty", () => {
    expect(valid(toml('[agent]\nname = ""\n')).name).toBe("demo");
  });

  it("refuses a name that is not a string", () => {
    const result = invalid(toml("[agent]\nname = 42\n"));
    expect(result.message).toBe(`${TOML_FILE}: agent.name: must be a string, got 42`);
  });

  it("refuses an invalid directory name when the file gives no name, with control characters escaped", () => {
    const result = invalid(
      parseAgentDefinition("/srv/a/x\u001b[31m/agent.toml", "", "x\u001b[31m"),
    );
    expect(result.name).toBe("x\\u001b[31m");
    expect(result.message).toContain("agent.name: not set, and the directory name");
    expect(result.message).not.toContain("\u001b");
  });

  it("accepts an invalid directory name when the file declares a valid name", () => {
    expect(valid(toml('[agent]\nname = "fine"\n', "my agent")).name).toBe("fine");
  });
});
