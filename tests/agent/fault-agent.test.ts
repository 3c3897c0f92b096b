import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ChildTracker, cleanEnv, FAULT_AGENT, isAlive } from "./child-processes.ts";

const isReady = (line: string) => line.startsWith("READY ");
const portOf = (line: string) => Number(line.slice("READY ".length));

async function statusCode(url: string): Promise<number> {
  return (await fetch(url)).status;
}

/** A port that was free a moment ago (for modes that need a known port, like wrong-port). */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("fault-agent fixture", () => {
  const tracker = new ChildTracker();
  let scratch: string;

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "fault-agent-"));
  });
  afterEach(() => tracker.killAll());
  afterAll(() => rm(scratch, { recursive: true, force: true }));

  function start(env: Record<string, string>, args: string[] = []) {
    return tracker.spawn(FAULT_AGENT, args, { env: cleanEnv(env) });
  }

  it("serves /status, prints READY with the bound port and exits 0 on SIGTERM", async () => {
    const agent = start({ PORT: "0", ATOLL_AGENT_NAME: "probe-me" });
    const port = portOf(await agent.waitForLine(isReady));
    const res = await fetch(`http://127.0.0.1:${port}/status`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ok", name: "probe-me", pid: agent.pid });
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toEqual({ code: 0, signal: null });
  });

  it("takes --port over PORT", async () => {
    const port = await freePort();
    const agent = start({ PORT: "1" }, ["--port", String(port)]);
    expect(portOf(await agent.waitForLine(isReady))).toBe(port);
  });

  it("crash-at-start exits with EXIT_CODE before listening and still marks the start", async () => {
    const mark = join(scratch, "crash.marks");
    const agent = start({ FAULT: "crash-at-start", EXIT_CODE: "7", MARK_FILE: mark });
    expect(await agent.exited).toEqual({ code: 7, signal: null });
    expect(agent.lines.some(isReady)).toBe(false);
    expect(await readFile(mark, "utf8")).toBe(`${agent.pid} start\n`);
  });

  it("crash-after exits with code 3 by default once ready", async () => {
    const agent = start({ FAULT: "crash-after", CRASH_AFTER_MS: "50" });
    await agent.waitForLine(isReady);
    expect(await agent.exited).toEqual({ code: 3, signal: null });
  });

  it("never-healthy answers 503 and fail-after turns from 200 to 503", async () => {
    const sick = start({ FAULT: "never-healthy" });
    const sickPort = portOf(await sick.waitForLine(isReady));
    expect(await statusCode(`http://127.0.0.1:${sickPort}/status`)).toBe(503);

    const failing = start({ FAULT: "fail-after", FAIL_AFTER_MS: "300" });
    const port = portOf(await failing.waitForLine(isReady));
    expect(await statusCode(`http://127.0.0.1:${port}/status`)).toBe(200);
    // Poll until it turns: each probe is an event (an HTTP answer), not a sleep.
    let code = 200;
    while (code === 200) code = await statusCode(`http://127.0.0.1:${port}/status`);
    expect(code).toBe(503);
  });

  it("wrong-port listens on PORT+1", async () => {
    const port = await freePort();
    const agent = start({ FAULT: "wrong-port", PORT: String(port) });
    expect(portOf(await agent.waitForLine(isReady))).toBe(port + 1);
    expect(await statusCode(`http://127.0.0.1:${port + 1}/status`)).toBe(200);
  });

  it("bind-ipv6 listens on ::1", async () => {
    const agent = start({ FAULT: "bind-ipv6" });
    const port = portOf(await agent.waitForLine(isReady));
    expect(await statusCode(`http://[::1]:${port}/status`)).toBe(200);
  });

  it("ignore-sigterm survives SIGTERM until SIGKILL", async () => {
    const agent = start({ FAULT: "ignore-sigterm" });
    const port = portOf(await agent.waitForLine(isReady));
    agent.child.kill("SIGTERM");
    await agent.waitForLine((line) => line === "SIGTERM ignored");
    expect(await statusCode(`http://127.0.0.1:${port}/status`)).toBe(200);
    agent.child.kill("SIGKILL");
    expect(await agent.exited).toEqual({ code: null, signal: "SIGKILL" });
  });

  it("grandchild leaves a live process behind that outlives the agent", async () => {
    const agent = start({ FAULT: "grandchild" });
    const line = await agent.waitForLine((l) => l.startsWith("GRANDCHILD "));
    const grandchild = Number(line.slice("GRANDCHILD ".length));
    tracker.trackPid(grandchild);
    await agent.waitForLine(isReady);
    agent.child.kill("SIGTERM");
    await agent.exited;
    expect(isAlive(grandchild)).toBe(true);
  });

  it("flood writes FLOOD_BYTES in 100-character lines before READY", async () => {
    const agent = start({ FAULT: "flood", FLOOD_BYTES: String(2 * 1024 * 1024) });
    await agent.waitForLine(isReady);
    // 2 MiB in 100-byte lines is about 21 000 lines (the helper keeps only the last 10 000).
    expect(agent.lineCount()).toBeGreaterThan(20_000);
    expect(agent.lines[0]).toBe("x".repeat(99));
  });

  it("alloc reports the allocation after READY", async () => {
    const agent = start({ FAULT: "alloc", ALLOC_MB: "8" });
    await agent.waitForLine(isReady);
    await agent.waitForLine((line) => line === "ALLOCATED 8");
  });

  it("rejects an unknown FAULT mode with exit 2", async () => {
    const agent = start({ FAULT: "never-healthy,bogus" });
    expect((await agent.exited).code).toBe(2);
    expect(agent.stderr()).toContain('unknown FAULT mode "bogus"');
  });
});
