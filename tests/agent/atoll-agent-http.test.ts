import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, Agent as HttpAgent } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { rawRequest, type StartedAgent, startAgent, writeDefinition } from "./agent-runtime.ts";
import { AGENT_BIN, ChildTracker, cleanEnv } from "./child-processes.ts";
import { makeTempHome, type TempHome } from "./fake-ollama.ts";

const GREETER_TOML = `
[agent]
name = "greeter"
version = "1.2.3"
description = "test agent"

[llm]
model = "echo"

[deployment]
autostart = false

[mcp_servers.files]
command = "true"
`;

describe("atoll-agent HTTP contract", () => {
  const tracker = new ChildTracker();
  let root: string;
  let home: TempHome;
  let greeterPath: string;
  let env: NodeJS.ProcessEnv;
  /** Shared by the read-only tests; lifecycle tests start their own. */
  let shared: StartedAgent;
  const sharedTracker = new ChildTracker();

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "atoll-agent-http-"));
    home = await makeTempHome();
    env = cleanEnv({ HOME: home.dir });
    greeterPath = await writeDefinition(root, "greeter", "agent.toml", GREETER_TOML);
    shared = await startAgent(sharedTracker, greeterPath, { env });
  });
  afterEach(() => tracker.killAll());
  afterAll(async () => {
    await sharedTracker.killAll();
    await home.remove();
    await rm(root, { recursive: true, force: true });
  });

  it("prints a readiness line with the bound host and port", () => {
    expect(shared.host).toBe("127.0.0.1");
    expect(shared.port).toBeGreaterThan(0);
    const ready = JSON.parse(shared.proc.lines.find((l) => l.includes("listening")) ?? "{}");
    expect(ready).toMatchObject({ event: "listening", name: "greeter", model: "echo" });
    expect(ready.pid).toBe(shared.proc.pid);
  });

  it("answers GET /status with status ok, name, version, model and uptime", async () => {
    const res = await fetch(`${shared.base}/status`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: "ok", name: "greeter", version: "1.2.3", model: "echo" });
    expect(typeof body.uptime_seconds).toBe("number");
    expect(body.uptime_seconds).toBeGreaterThanOrEqual(0);
  });

  it("serves /health as an alias of /status, also for HEAD and with a query string", async () => {
    const health = await fetch(`${shared.base}/health?probe=1`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok", name: "greeter" });
    const head = await fetch(`${shared.base}/status`, { method: "HEAD" });
    expect(head.status).toBe(200);
  });

  it("answers a prompt with the echo model, prefixed with the agent name", async () => {
    const res = await fetch(`${shared.base}/prompt`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "hello there" }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ response: "[greeter] hello there", model: "echo" });
  });

  it("rejects a body that is not JSON with 400 and a JSON error", async () => {
    const res = await fetch(`${shared.base}/prompt`, { method: "POST", body: '{"prompt": ' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: expect.stringContaining("not valid JSON") });
  });

  it("rejects a missing, non-string or empty prompt with 400", async () => {
    for (const body of ["{}", '{"prompt": 42}', '["prompt"]', "null", '{"prompt": "  "}']) {
      const res = await fetch(`${shared.base}/prompt`, { method: "POST", body });
      expect(res.status, body).toBe(400);
      expect(((await res.json()) as { error: string }).error, body).toMatch(/prompt/);
    }
  });

  it("refuses a declared body over 1 MiB with 413 without buffering it", async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, "a");
    const res = await rawRequest(`${shared.base}/prompt`, { method: "POST", body: big });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toEqual({ error: expect.stringContaining("larger than") });
  });

  it("refuses a chunked body that grows over 1 MiB with 413", async () => {
    const chunk = Buffer.alloc(256 * 1024, "b");
    const res = await rawRequest(`${shared.base}/prompt`, {
      method: "POST",
      headers: { "transfer-encoding": "chunked" },
      body: [chunk, chunk, chunk, chunk, chunk, chunk],
    });
    expect(res.status).toBe(413);
  });

  it("refuses an oversized body announced with Expect: 100-continue before it is sent", async () => {
    const res = await rawRequest(`${shared.base}/prompt`, {
      method: "POST",
      headers: { expect: "100-continue", "content-length": String(5 * 1024 * 1024) },
    });
    expect(res.status).toBe(413);
  });

  it("answers 404 for an unknown path and 405 with Allow for a wrong method", async () => {
    const missing = await fetch(`${shared.base}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: "not found: /nope" });

    const wrong = await fetch(`${shared.base}/prompt`);
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("POST");
    expect(await wrong.json()).toHaveProperty("error");

    const wrongStatus = await fetch(`${shared.base}/status`, { method: "POST" });
    expect(wrongStatus.status).toBe(405);
    expect(wrongStatus.headers.get("allow")).toBe("GET, HEAD");
  });

  it("writes one JSON log line per request to stdout", async () => {
    await fetch(`${shared.base}/status?marker=log-test`);
    await fetch(`${shared.base}/log-test-missing`);
    const line = await shared.proc.waitForLine((l) => l.includes('"/log-test-missing"'));
    const record = JSON.parse(line) as Record<string, unknown>;
    expect(Object.keys(record).sort()).toEqual(["method", "ms", "path", "status", "time"]);
    expect(record).toMatchObject({ method: "GET", path: "/log-test-missing", status: 404 });
    expect(new Date(record.time as string).toISOString()).toBe(record.time);
    expect(record.ms).toBeGreaterThanOrEqual(0);
    for (const l of shared.proc.lines) expect(() => JSON.parse(l)).not.toThrow();
  });

  it("reads the name from nested and flat JSON definitions and else from the directory", async () => {
    const nested = await writeDefinition(
      root,
      "dir-a",
      "agent.json",
      JSON.stringify({ agent: { name: "nested-one", version: "2.0" }, llm: { model: "echo" } }),
    );
    const flat = await writeDefinition(
      root,
      "dir-b",
      "agent.json",
      JSON.stringify({ name: "flat-one", version: "0.1", description: "legacy" }),
    );
    const unnamed = await writeDefinition(root, "by-directory", "agent.toml", "[llm]\n");
    const expectations: [string, string, string][] = [
      [nested, "nested-one", "2.0"],
      [flat, "flat-one", "0.1"],
      [unnamed, "by-directory", ""],
    ];
    await Promise.all(
      expectations.map(async ([path, name, version]) => {
        const agent = await startAgent(tracker, path, { env });
        const body = await (await fetch(`${agent.base}/status`)).json();
        expect(body).toMatchObject({ status: "ok", name, version, model: "echo" });
      }),
    );
  });

  it("answers POST /shutdown with 202 and then exits with status 0", async () => {
    const agent = await startAgent(tracker, greeterPath, { env });
    const res = await fetch(`${agent.base}/shutdown`, { method: "POST" });
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ status: "shutting down" });
    expect(await agent.proc.exited).toEqual({ code: 0, signal: null });
    expect(agent.proc.lines.some((l) => l.includes('"event":"stopped"'))).toBe(true);
  });

  it("exits 0 within a second of SIGTERM while a keep-alive connection is open", async () => {
    const agent = await startAgent(tracker, greeterPath, { env });
    const keepAlive = new HttpAgent({ keepAlive: true });
    try {
      const res = await rawRequest(`${agent.base}/status`, { agent: keepAlive });
      expect(res.status).toBe(200);
      const sentAt = performance.now();
      agent.proc.child.kill("SIGTERM");
      expect(await agent.proc.exited).toEqual({ code: 0, signal: null });
      // The runtime exits within 750 ms by design; the bound is loose so a loaded CI machine
      // cannot flake it, yet still far below the 5 s keep-alive or LLM waits it must not sit out.
      expect(performance.now() - sentAt).toBeLessThan(3000);
    } finally {
      keepAlive.destroy();
    }
  });

  it("exits 0 on SIGINT", async () => {
    const agent = await startAgent(tracker, greeterPath, { env });
    agent.proc.child.kill("SIGINT");
    expect(await agent.proc.exited).toEqual({ code: 0, signal: null });
  });

  it("binds the address given by --host", async () => {
    const agent = await startAgent(tracker, greeterPath, { env, extraArgs: ["--host", "::1"] });
    expect(agent.host).toBe("::1");
    const res = await fetch(`${agent.base}/status`);
    expect(res.status).toBe(200);
  });

  it("fails with status 1 and one stderr line when the definition is missing", async () => {
    const missing = join(root, "absent", "agent.toml");
    const proc = tracker.spawn(AGENT_BIN, ["--server", "--port", "0", "--agent", missing], {
      env,
    });
    expect((await proc.exited).code).toBe(1);
    const stderr = proc.stderr().trimEnd();
    expect(stderr.split("\n")).toHaveLength(1);
    expect(stderr).toContain(missing);
    expect(stderr).toContain("file not found");
  });

  it("fails with status 1 naming the line of a TOML syntax error", async () => {
    const broken = await writeDefinition(
      root,
      "broken",
      "agent.toml",
      '[agent]\nname = "x"\n= 1\n',
    );
    const proc = tracker.spawn(AGENT_BIN, ["--server", "--port", "0", "--agent", broken], { env });
    expect((await proc.exited).code).toBe(1);
    const stderr = proc.stderr().trimEnd();
    expect(stderr.split("\n")).toHaveLength(1);
    expect(stderr).toContain(`${broken}:3:`);
    expect(stderr).toContain("TOML syntax error");
  });

  it("fails with status 1 naming the key of a wrongly typed value", async () => {
    const typed = await writeDefinition(
      root,
      "typed",
      "agent.json",
      JSON.stringify({ agent: { name: "typed" }, llm: { temperature: "hot" } }),
    );
    const proc = tracker.spawn(AGENT_BIN, ["--server", "--port", "0", "--agent", typed], { env });
    expect((await proc.exited).code).toBe(1);
    expect(proc.stderr()).toContain("llm.temperature: must be a number");
  });

  it("fails with status 1 when the port is already in use", async () => {
    const blocker = createServer();
    blocker.listen(0, "127.0.0.1");
    await once(blocker, "listening");
    const { port } = blocker.address() as AddressInfo;
    try {
      const proc = tracker.spawn(
        AGENT_BIN,
        ["--server", "--port", String(port), "--agent", greeterPath],
        { env },
      );
      expect((await proc.exited).code).toBe(1);
      const stderr = proc.stderr().trimEnd();
      expect(stderr.split("\n")).toHaveLength(1);
      expect(stderr).toContain("address already in use");
      expect(stderr).toContain(String(port));
    } finally {
      blocker.close();
    }
  });

  it("exits with status 2 and the usage on a usage error", async () => {
    const cases = [
      ["--port", "0", "--agent", greeterPath],
      ["--server", "--agent", greeterPath],
      ["--server", "--port", "99999", "--agent", greeterPath],
      ["--server", "--port", "0"],
      ["--server", "--port", "0", "--agent", greeterPath, "--bogus"],
    ];
    await Promise.all(
      cases.map(async (args) => {
        const proc = tracker.spawn(AGENT_BIN, args, { env });
        expect((await proc.exited).code, args.join(" ")).toBe(2);
        expect(proc.stderr()).toContain("Usage: atoll-agent");
      }),
    );
  });
});
