import { describe, expect, it } from "vitest";
import { parseAgentDefinition } from "../../src/config/parse-definition.ts";
import { invalid, JSON_FILE, json, TOML_FILE, valid } from "./definition-helpers.ts";

describe("parseAgentDefinition with JSON", () => {
  it("reads the nested dialect", () => {
    const definition = valid(
      json({
        agent: { name: "summarizer", version: "0.2.0", description: "d", capabilities: ["s"] },
        llm: { model: "echo" },
        deployment: { max_restarts: 5, restart_delay: 2, env: { STYLE: "bullets" } },
        resources: { memory_limit: "512MB", health_check_interval: 12 },
      }),
    );
    expect(definition).toMatchObject({
      name: "summarizer",
      version: "0.2.0",
      description: "d",
      capabilities: ["s"],
      configPath: JSON_FILE,
      deployment: {
        maxRestarts: 5,
        restartDelayMs: 2000,
        env: { STYLE: "bullets" },
        healthCheckIntervalMs: 12_000,
      },
      resources: { memoryLimitBytes: 512e6 },
      warnings: [],
    });
  });

  it("reads the flat legacy dialect with identity keys at the top level", () => {
    const definition = valid(
      json({
        name: "legacy",
        version: "1.0",
        description: "old style",
        capabilities: ["chat"],
        model: "llama3",
        deployment: { port: 8300, autostart: true },
        resources: { memory_limit: "1GB" },
      }),
    );
    expect(definition).toMatchObject({
      name: "legacy",
      version: "1.0",
      description: "old style",
      capabilities: ["chat"],
      deployment: { port: 8300, autostart: true },
      resources: { memoryLimitBytes: 1e9 },
      warnings: [],
    });
  });

  it("names flat-dialect keys without a section prefix", () => {
    expect(invalid(json({ name: 5 })).message).toBe(`${JSON_FILE}: name: must be a string, got 5`);
    expect(invalid(json({ name: "../etc" })).message).toContain(
      `${JSON_FILE}: name: invalid agent name "../etc"`,
    );
  });

  it("ignores a top-level name in the nested dialect, with a warning", () => {
    const definition = valid(json({ name: "top", agent: { version: "1" } }));
    expect(definition.name).toBe("demo");
    expect(definition.warnings).toEqual([
      "top-level key name is ignored: identity belongs in the agent section",
    ]);
  });

  it("refuses an agent key that is not an object", () => {
    expect(invalid(json({ agent: "x" })).message).toBe(
      `${JSON_FILE}: agent: must be an object, got "x"`,
    );
  });

  it("reports malformed JSON with line and column", () => {
    const result = invalid(
      parseAgentDefinition(JSON_FILE, '{\n  "agent": {\n    "name" "x"\n  }\n}', "demo"),
    );
    expect(result.message).toBe(
      `${JSON_FILE}: line 3, column 12: invalid JSON: Expected ':' after property name`,
    );
  });

  it("reports truncated JSON at its last line", () => {
    const result = invalid(parseAgentDefinition(JSON_FILE, '{\n  "agent": \n', "demo"));
    expect(result.message).toBe(`${JSON_FILE}: line 3: invalid JSON: unexpected end of file`);
  });

  it("refuses a top level that is not an object", () => {
    expect(invalid(json([1, 2])).message).toBe(
      `${JSON_FILE}: top level must be a JSON object, got an array`,
    );
    expect(invalid(json(null)).message).toBe(
      `${JSON_FILE}: top level must be a JSON object, got null`,
    );
  });

  it("ignores a byte order mark", () => {
    expect(
      valid(parseAgentDefinition(JSON_FILE, '\uFEFF{"agent": {"name": "bom"}}', "demo")).name,
    ).toBe("bom");
    expect(valid(parseAgentDefinition(TOML_FILE, '\uFEFF[agent]\nname = "bom"', "demo")).name).toBe(
      "bom",
    );
  });

  it("chooses the syntax by file extension, case-insensitively", () => {
    expect(
      valid(parseAgentDefinition("/a/demo/AGENT.JSON", '{"name": "upper"}', "demo")).name,
    ).toBe("upper");
  });

  it("resolves a relative file path", () => {
    const definition = valid(parseAgentDefinition("demo/agent.toml", "", "demo"));
    expect(definition.configPath).toBe(`${process.cwd()}/demo/agent.toml`);
    expect(definition.dir).toBe(`${process.cwd()}/demo`);
  });
});
