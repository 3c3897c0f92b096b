import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startAgent, writeDefinition } from "./agent-runtime.ts";
import { ChildTracker, cleanEnv, REPO_ROOT } from "./child-processes.ts";
import { type FakeReply, makeTempHome, startFakeOllama } from "./fake-ollama.ts";

const ASSISTANT_TOML = `
[agent]
name = "assistant"
version = "0.9.0"

[llm]
model = "tinyllama"
temperature = 0.25
system_prompt = "Be brief."
timeout = 5
`;

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function postPrompt(base: string, prompt: string) {
  const res = await fetch(`${base}/prompt`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("atoll-agent with an Ollama model", () => {
  const tracker = new ChildTracker();
  const cleanups: (() => Promise<void>)[] = [];
  let root: string;
  let assistantPath: string;

  /** Starts a stand-in Ollama and a HOME whose .ollama_config.json points at it. */
  async function ollamaWith(reply: (body: unknown) => FakeReply) {
    const ollama = await startFakeOllama(reply);
    cleanups.push(() => ollama.close());
    const home = await makeTempHome({ base_url: "http://127.0.0.1", port: ollama.port });
    cleanups.push(() => home.remove());
    return { ollama, env: cleanEnv({ HOME: home.dir }) };
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "atoll-agent-llm-"));
    assistantPath = await writeDefinition(root, "assistant", "agent.toml", ASSISTANT_TOML);
  });
  afterEach(async () => {
    await tracker.killAll();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it("sends model, prompt, system, stream false and temperature to /api/generate", async () => {
    const { ollama, env } = await ollamaWith(() => ({
      kind: "json",
      status: 200,
      body: { model: "tinyllama", response: "Hi!", done: true },
    }));
    const agent = await startAgent(tracker, assistantPath, { env });

    const answer = await postPrompt(agent.base, "Say hi");
    expect(answer).toEqual({ status: 200, body: { response: "Hi!", model: "tinyllama" } });
    expect(ollama.requests).toEqual([
      {
        model: "tinyllama",
        prompt: "Say hi",
        system: "Be brief.",
        stream: false,
        options: { temperature: 0.25 },
      },
    ]);
    const status = await (await fetch(`${agent.base}/status`)).json();
    expect(status).toMatchObject({ status: "ok", name: "assistant", model: "tinyllama" });
  });

  it("answers 502 with Ollama's error when Ollama answers 5xx", async () => {
    const { env } = await ollamaWith(() => ({
      kind: "json",
      status: 500,
      body: { error: "model runner crashed" },
    }));
    const agent = await startAgent(tracker, assistantPath, { env });
    const answer = await postPrompt(agent.base, "hello");
    expect(answer.status).toBe(502);
    expect(answer.body.error).toContain("HTTP 500");
    expect(answer.body.error).toContain("model runner crashed");
  });

  it("answers 502 when Ollama's answer is not the expected JSON", async () => {
    const { env } = await ollamaWith(() => ({ kind: "text", status: 200, body: "<html>" }));
    const agent = await startAgent(tracker, assistantPath, { env });
    const answer = await postPrompt(agent.base, "hello");
    expect(answer.status).toBe(502);
    expect(answer.body.error).toContain('no "response"');
  });

  it("answers 502 when Ollama is unreachable", async () => {
    const home = await makeTempHome({ base_url: "http://127.0.0.1", port: await closedPort() });
    cleanups.push(() => home.remove());
    const agent = await startAgent(tracker, assistantPath, { env: cleanEnv({ HOME: home.dir }) });
    const answer = await postPrompt(agent.base, "hello");
    expect(answer.status).toBe(502);
    expect(answer.body.error).toMatch(/unreachable.*ECONNREFUSED/);
  });

  it("answers 504 when Ollama is slower than [llm].timeout", async () => {
    const { ollama, env } = await ollamaWith(() => ({ kind: "hang" }));
    const quick = await writeDefinition(
      root,
      "quick",
      "agent.toml",
      '[agent]\nname = "quick"\n[llm]\nmodel = "tinyllama"\ntimeout = 0.2\n',
    );
    const agent = await startAgent(tracker, quick, { env });
    const arrived = ollama.nextRequest();
    const answer = await postPrompt(agent.base, "take your time");
    await arrived;
    expect(answer.status).toBe(504);
    expect(answer.body.error).toContain("did not answer within 0.2 s");
  });

  it("lets OLLAMA_HOST override the address in .ollama_config.json", async () => {
    const { ollama, env } = await ollamaWith(() => ({
      kind: "json",
      status: 200,
      body: { response: "via env" },
    }));
    const home = await makeTempHome({ base_url: "http://127.0.0.1", port: await closedPort() });
    cleanups.push(() => home.remove());
    const agent = await startAgent(tracker, assistantPath, {
      env: { ...env, HOME: home.dir, OLLAMA_HOST: `127.0.0.1:${ollama.port}` },
    });
    expect(await postPrompt(agent.base, "x")).toMatchObject({
      status: 200,
      body: { response: "via env" },
    });
  });

  it("takes the model from .ollama_config.json when [llm] names none", async () => {
    const { ollama, env } = await ollamaWith(() => ({
      kind: "json",
      status: 200,
      body: { response: "ok" },
    }));
    const home = await makeTempHome({
      base_url: "http://127.0.0.1",
      port: ollama.port,
      model: "mistral",
      temperature: 0.5,
    });
    cleanups.push(() => home.remove());
    const plain = await writeDefinition(root, "plain", "agent.toml", '[agent]\nname = "plain"\n');
    const agent = await startAgent(tracker, plain, { env: { ...env, HOME: home.dir } });
    expect(await postPrompt(agent.base, "x")).toEqual({
      status: 200,
      body: { response: "ok", model: "mistral" },
    });
    expect(ollama.requests[0]).toEqual({
      model: "mistral",
      prompt: "x",
      stream: false,
      options: { temperature: 0.5 },
    });
  });

  it("warns on stderr about a malformed .ollama_config.json and still starts", async () => {
    const home = await makeTempHome("{ not json");
    cleanups.push(() => home.remove());
    const agent = await startAgent(tracker, assistantPath, { env: cleanEnv({ HOME: home.dir }) });
    expect(agent.proc.stderr()).toContain("warning:");
    expect(agent.proc.stderr()).toContain(".ollama_config.json: invalid JSON");
    expect((await fetch(`${agent.base}/status`)).status).toBe(200);
  });

  it("serves the bundled ollama-assistant's /status without Ollama", async () => {
    const home = await makeTempHome({ base_url: "http://127.0.0.1", port: await closedPort() });
    cleanups.push(() => home.remove());
    const bundled = join(REPO_ROOT, "atoll_agents", "ollama-assistant", "agent.toml");
    const agent = await startAgent(tracker, bundled, { env: cleanEnv({ HOME: home.dir }) });
    const status = await fetch(`${agent.base}/status`);
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ name: "ollama-assistant", model: "llama3.2" });
    expect((await postPrompt(agent.base, "hi")).status).toBe(502);
  });

  it("answers 503 to a prompt still waiting on the LLM and exits 0 within a second of SIGTERM", async () => {
    const { ollama, env } = await ollamaWith(() => ({ kind: "hang" }));
    const agent = await startAgent(tracker, assistantPath, { env });
    const arrived = ollama.nextRequest();
    const pending = postPrompt(agent.base, "never answered");
    await arrived;
    const sentAt = performance.now();
    agent.proc.child.kill("SIGTERM");
    expect(await agent.proc.exited).toEqual({ code: 0, signal: null });
    // The runtime exits within 750 ms by design; the bound is loose so a loaded CI machine
    // cannot flake it, yet still far below the 5 s keep-alive or LLM waits it must not sit out.
    expect(performance.now() - sentAt).toBeLessThan(3000);
    expect(await pending).toEqual({ status: 503, body: { error: "agent is shutting down" } });
  });
});
