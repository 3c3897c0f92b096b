/**
 * Whose server answered a probe (issue 13): the listening socket on the port must belong to the
 * agent's tree, found through /proc/net/tcp{,6} and the members' fds.
 */
import { once } from "node:events";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { createPortOwnerCheck, foreignListener } from "../../src/platform/port-owner.ts";
import { readProcStat } from "../../src/platform/proc-info.ts";
import { listeningInodesByPort } from "../../src/platform/proc-sockets.ts";
import { processTree } from "../../src/platform/process-tree.ts";
import { spawnAgent } from "../../src/platform/spawn-agent.ts";
import { terminateGroup } from "../../src/platform/terminate-group.ts";
import { ProcessTracker, TempDirs, waitForLogLine } from "./helpers.ts";

const FAULT_AGENT = fileURLToPath(new URL("../fixtures/fault-agent.mjs", import.meta.url));

const dirs = new TempDirs();
const tracker = new ProcessTracker();

afterEach(async () => {
  const leaked = tracker.leaked();
  await dirs.cleanup();
  expect(leaked).toEqual([]);
});

async function listening(host: string): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createServer();
  server.listen(0, host);
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return {
    port: address.port,
    close: async () => {
      server.close();
      await once(server, "close");
    },
  };
}

describe("foreignListener", () => {
  it("finds nothing foreign when the agent's own process listens, and names the one that does", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "agent.log");
    const agent = await spawnAgent({
      argv: [process.execPath, FAULT_AGENT],
      cwd: dir,
      env: { PORT: "0" },
      output: { file: logPath },
    });
    tracker.track(agent.pid);
    const port = Number((await waitForLogLine(logPath, /^READY (\d+)$/))[1]);
    const tree = processTree({ group: agent.pgid });
    expect(foreignListener(port, tree)).toBeUndefined();
    // This test process is the "impostor" on another port (IPv4 and IPv6 alike).
    for (const host of ["127.0.0.1", "::1"]) {
      const impostor = await listening(host);
      try {
        expect(foreignListener(impostor.port, tree)).toEqual({
          pid: process.pid,
          command: readProcStat(process.pid)?.comm,
        });
      } finally {
        await impostor.close();
      }
      // Nothing listens there any more: nothing to tell.
      expect(foreignListener(impostor.port, tree)).toBeUndefined();
    }
    await terminateGroup(agent.pgid, { stopTimeoutMs: 5_000, exited: agent.exited, tree });
  });

  it("reads the socket tables again only when the tree lost its sockets or the last read is old", async () => {
    const dir = await dirs.make();
    const logPath = join(dir, "agent.log");
    const agent = await spawnAgent({
      argv: [process.execPath, FAULT_AGENT],
      cwd: dir,
      env: { PORT: "0" },
      output: { file: logPath },
    });
    tracker.track(agent.pid);
    const port = Number((await waitForLogLine(logPath, /^READY (\d+)$/))[1]);
    const tree = processTree({ group: agent.pgid });
    let reads = 0;
    let nowMs = 0;
    const check = createPortOwnerCheck({
      maxAgeMs: 1_000,
      now: () => nowMs,
      readListeners: () => {
        reads += 1;
        return listeningInodesByPort();
      },
    });
    expect(await check(port, tree, nowMs)).toBeUndefined();
    expect(await check(port, tree, nowMs)).toBeUndefined();
    expect(reads).toBe(1); // the tree still holds its listening socket: trusted
    nowMs = 1_000;
    expect(await check(port, tree, nowMs)).toBeUndefined();
    expect(reads).toBe(2); // too old: read again
    // The agent is gone and another process listens on its port: seen at once.
    await terminateGroup(agent.pgid, { stopTimeoutMs: 5_000, exited: agent.exited, tree });
    const server = createServer();
    server.listen(port, "127.0.0.1");
    await once(server, "listening");
    try {
      nowMs = 1_001;
      expect((await check(port, tree, nowMs))?.pid).toBe(process.pid);
      expect(reads).toBe(3);
    } finally {
      server.close();
      await once(server, "close");
    }
  });

  it("serves every check whose probe began before one read of the tables with that read", async () => {
    const dir = await dirs.make();
    const trees = [];
    const ports: number[] = [];
    const agents = [];
    for (let i = 0; i < 3; i++) {
      const logPath = join(dir, `agent-${i}.log`);
      const agent = await spawnAgent({
        argv: [process.execPath, FAULT_AGENT],
        cwd: dir,
        env: { PORT: "0" },
        output: { file: logPath },
      });
      tracker.track(agent.pid);
      agents.push(agent);
      ports.push(Number((await waitForLogLine(logPath, /^READY (\d+)$/))[1]));
      trees.push(processTree({ group: agent.pgid }));
    }
    let reads = 0;
    let nowMs = 10;
    const check = createPortOwnerCheck({
      now: () => nowMs,
      readListeners: () => {
        reads += 1;
        return listeningInodesByPort();
      },
    });
    // Three probes began at 5, before the first check's read at 10: one read for all three.
    const verdicts = await Promise.all(trees.map((tree, i) => check(ports[i] ?? 0, tree, 5)));
    expect(verdicts).toEqual([undefined, undefined, undefined]);
    expect(reads).toBe(1);
    // A probe that began after that read needs a read of its own.
    nowMs = 20;
    const impostor = await listening("127.0.0.1");
    try {
      const tree = trees[0];
      if (tree === undefined) throw new Error("no tree");
      expect((await check(impostor.port, tree, 15))?.pid).toBe(process.pid);
      expect(reads).toBe(2);
    } finally {
      await impostor.close();
    }
    for (const [i, agent] of agents.entries()) {
      await terminateGroup(agent.pgid, {
        stopTimeoutMs: 5_000,
        exited: agent.exited,
        tree: trees[i],
      });
    }
  });
});
