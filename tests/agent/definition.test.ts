import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  AgentDefinitionError,
  parseAgentDefinition,
  readAgentDefinition,
} from "../../src/agent/definition.ts";
import { REPO_ROOT } from "./child-processes.ts";

const dir = "/agents/my-agent";

describe("parseAgentDefinition", () => {
  it("reads identity and [llm] from TOML, accepting other sections as they are", () => {
    const definition = parseAgentDefinition(
      `[agent]
name = "ghidra"
version = "2.0.0"
description = "binary analysis"
author = "someone"

[llm]
model = "codellama:7b"
temperature = 0.3
system_prompt = "You analyse binaries."
request_timeout = 90

[mcp_servers.ghidramcp]
type = "stdio"
command = "python"

[sub_agents.helper]
url = "http://x:8000"
`,
      `${dir}/agent.toml`,
    );
    expect(definition).toEqual({
      path: `${dir}/agent.toml`,
      name: "ghidra",
      version: "2.0.0",
      description: "binary analysis",
      llm: {
        model: "codellama:7b",
        temperature: 0.3,
        systemPrompt: "You analyse binaries.",
        timeoutMs: 90_000,
      },
    });
    expect(Object.isFrozen(definition)).toBe(true);
  });

  it("prefers [llm].timeout over request_timeout and allows fractions of a second", () => {
    const definition = parseAgentDefinition(
      "[llm]\ntimeout = 0.25\nrequest_timeout = 9\n",
      `${dir}/agent.toml`,
    );
    expect(definition.llm.timeoutMs).toBe(250);
  });

  it("reads the nested JSON dialect", () => {
    const definition = parseAgentDefinition(
      JSON.stringify({ agent: { name: "nested", version: "1" }, llm: { model: "echo" } }),
      `${dir}/agent.json`,
    );
    expect(definition).toMatchObject({ name: "nested", version: "1", llm: { model: "echo" } });
  });

  it("reads the flat legacy JSON dialect", () => {
    const definition = parseAgentDefinition(
      JSON.stringify({ name: "flat", description: "old style", llm: { model: "llama2" } }),
      `${dir}/agent.json`,
    );
    expect(definition).toMatchObject({
      name: "flat",
      version: "",
      description: "old style",
      llm: { model: "llama2" },
    });
  });

  it("falls back to the directory name when no name is given", () => {
    expect(parseAgentDefinition("", `${dir}/agent.toml`).name).toBe("my-agent");
    expect(parseAgentDefinition("{}", `${dir}/agent.json`).name).toBe("my-agent");
    expect(parseAgentDefinition('[agent]\nname = ""\n', `${dir}/agent.toml`).name).toBe("my-agent");
  });

  it("names file, line and column of a TOML syntax error in one line", () => {
    expect(() =>
      parseAgentDefinition('[agent]\nname = "x"\nfoo = = 1\n', `${dir}/agent.toml`),
    ).toThrowError(
      new AgentDefinitionError(`${dir}/agent.toml:3:7: TOML syntax error: invalid value`),
    );
  });

  it("names the file of invalid JSON and of a non-object top level", () => {
    expect(() => parseAgentDefinition("{", `${dir}/agent.json`)).toThrow(
      /^\/agents\/my-agent\/agent\.json: invalid JSON: /,
    );
    expect(() => parseAgentDefinition("[1]", `${dir}/agent.json`)).toThrow(
      "top level must be a JSON object",
    );
  });

  it.each([
    ["[agent]\nname = 5\n", "agent.name: must be a string"],
    ['agent = "x"\n', "agent: must be a table"],
    ['[llm]\nmodel = ["a"]\n', "llm.model: must be a string"],
    ['[llm]\ntemperature = "hot"\n', "llm.temperature: must be a number"],
    ["[llm]\ntimeout = 0\n", "llm.timeout: must be a positive number of seconds"],
    ["llm = 1\n", "llm: must be a table"],
  ])("names the key path of a wrongly typed value in %j", (text, message) => {
    expect(() => parseAgentDefinition(text, `${dir}/agent.toml`)).toThrow(
      `${dir}/agent.toml: ${message}`,
    );
  });
});

describe("readAgentDefinition", () => {
  it("reports a missing file by its absolute path", async () => {
    await expect(readAgentDefinition("/nonexistent/agent.toml")).rejects.toThrow(
      "/nonexistent/agent.toml: file not found",
    );
  });

  it.each([
    ["greeter/agent.toml", "greeter", "echo"],
    ["summarizer/agent.json", "summarizer", "echo"],
    ["ollama-assistant/agent.toml", "ollama-assistant", "llama3.2"],
  ])("reads the bundled definition %s", async (file, name, model) => {
    const definition = await readAgentDefinition(join(REPO_ROOT, "atoll_agents", file));
    expect(definition.name).toBe(name);
    expect(definition.llm.model).toBe(model);
    expect(definition.version).not.toBe("");
  });
});
