import { describe, expect, it } from "vitest";
import {
  DEFAULT_LLM_TIMEOUT_MS,
  effectiveLlmSettings,
  loadOllamaConfig,
  normaliseBaseUrl,
  parseOllamaConfig,
} from "../../src/agent/ollama-config.ts";
import { makeTempHome } from "./fake-ollama.ts";

const FILE = "/home/u/.ollama_server/.ollama_config.json";

describe("normaliseBaseUrl", () => {
  it.each([
    ["http://localhost", undefined, "http://localhost:11434"],
    ["http://localhost", 9999, "http://localhost:9999"],
    ["http://localhost:1234", undefined, "http://localhost:1234"],
    ["http://localhost:1234/", 5678, "http://localhost:5678"],
    ["127.0.0.1:8080", undefined, "http://127.0.0.1:8080"],
    ["ollama.internal", undefined, "http://ollama.internal:11434"],
    ["http://proxy:80/ollama/", undefined, "http://proxy/ollama"],
    ["https://gpu.example", undefined, "https://gpu.example:11434"],
    ["http://[::1]", undefined, "http://[::1]:11434"],
    ["[::1]:7000", undefined, "http://[::1]:7000"],
  ])("turns %j (port %j) into %j", (value, port, expected) => {
    expect(normaliseBaseUrl(value, port)).toBe(expected);
  });

  it("refuses what is not an HTTP address", () => {
    expect(normaliseBaseUrl("ftp://x", undefined)).toBeUndefined();
    expect(normaliseBaseUrl("http://", undefined)).toBeUndefined();
    expect(normaliseBaseUrl("bad host name", undefined)).toBeUndefined();
  });
});

describe("parseOllamaConfig", () => {
  it("reads base_url, port, model, temperature and request_timeout", () => {
    const [config, warnings] = parseOllamaConfig(
      JSON.stringify({
        base_url: "http://gpu-box",
        port: 11500,
        model: "llama2",
        temperature: 0.7,
        request_timeout: 30,
        deployment: { base_port: 8100 },
      }),
      FILE,
    );
    expect(warnings).toEqual([]);
    expect(config).toEqual({
      baseUrl: "http://gpu-box:11500",
      model: "llama2",
      temperature: 0.7,
      timeoutMs: 30_000,
    });
  });

  it("accepts a port written as a string", () => {
    expect(parseOllamaConfig('{"port": "12000"}', FILE)[0].baseUrl).toBe("http://localhost:12000");
  });

  it("ignores wrongly typed keys with a warning each", () => {
    const [config, warnings] = parseOllamaConfig(
      JSON.stringify({ base_url: 7, port: 70000, model: "", temperature: "warm" }),
      FILE,
    );
    expect(config).toEqual({
      baseUrl: "http://localhost:11434",
      model: undefined,
      temperature: undefined,
      timeoutMs: undefined,
    });
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toBe(`${FILE}: base_url: expected a URL string; ignored`);
  });

  it("falls back to defaults with a warning for malformed JSON", () => {
    const [config, warnings] = parseOllamaConfig("{", FILE);
    expect(config.baseUrl).toBe("http://localhost:11434");
    expect(warnings[0]).toContain("invalid JSON");
  });
});

describe("loadOllamaConfig", () => {
  it("uses defaults silently when the file does not exist", async () => {
    const home = await makeTempHome();
    try {
      expect(await loadOllamaConfig(home.dir, undefined)).toEqual({
        config: {
          baseUrl: "http://localhost:11434",
          model: undefined,
          temperature: undefined,
          timeoutMs: undefined,
        },
        warnings: [],
      });
    } finally {
      await home.remove();
    }
  });

  it("lets OLLAMA_HOST override the file's address but keeps its other keys", async () => {
    const home = await makeTempHome({ base_url: "http://a", port: 1, model: "m" });
    try {
      const { config, warnings } = await loadOllamaConfig(home.dir, "http://b:2");
      expect(warnings).toEqual([]);
      expect(config).toMatchObject({ baseUrl: "http://b:2", model: "m" });
      const invalid = await loadOllamaConfig(home.dir, "ftp://nope");
      expect(invalid.config.baseUrl).toBe("http://a:1");
      expect(invalid.warnings[0]).toContain("OLLAMA_HOST");
    } finally {
      await home.remove();
    }
  });
});

describe("effectiveLlmSettings", () => {
  const ollama = {
    baseUrl: "http://o:1",
    model: "from-file",
    temperature: 0.9,
    timeoutMs: 5_000,
  };

  it("lets [llm] keys win over the Ollama config", () => {
    expect(
      effectiveLlmSettings(
        { model: "m", temperature: 0.1, systemPrompt: "s", timeoutMs: 100 },
        ollama,
      ),
    ).toEqual({
      model: "m",
      temperature: 0.1,
      systemPrompt: "s",
      timeoutMs: 100,
      baseUrl: "http://o:1",
    });
  });

  it("falls back to the Ollama config, then to echo and a 60 s timeout", () => {
    const none = {
      model: undefined,
      temperature: undefined,
      systemPrompt: undefined,
      timeoutMs: undefined,
    };
    expect(effectiveLlmSettings(none, ollama)).toMatchObject({
      model: "from-file",
      temperature: 0.9,
      timeoutMs: 5_000,
    });
    expect(
      effectiveLlmSettings(none, {
        baseUrl: "http://o:1",
        model: undefined,
        temperature: undefined,
        timeoutMs: undefined,
      }),
    ).toMatchObject({ model: "echo", temperature: undefined, timeoutMs: DEFAULT_LLM_TIMEOUT_MS });
  });
});
