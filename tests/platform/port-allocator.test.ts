import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { isDeployError } from "../../src/core/errors.ts";
import { PortAllocator } from "../../src/platform/port-allocator.ts";

const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(async (server) => {
      if (!server.listening) return;
      server.close();
      await once(server, "close");
    }),
  );
});

/** Holds host:port like a process outside the server would. */
async function hold(port: number, host = "127.0.0.1"): Promise<Server> {
  const server = createServer();
  servers.push(server);
  server.listen({ port, host, exclusive: true });
  await once(server, "listening");
  return server;
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * A run of `count` ports free on 127.0.0.1 and ::1, below the ephemeral range (so the kernel does
 * not hand them out meanwhile) and at a random place (so parallel test files do not collide).
 */
async function freeRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 10_000);
    let free = true;
    for (let port = base; port < base + count && free; port++) {
      free = (await canBind(port, "127.0.0.1")) && (await canBind(port, "::1"));
    }
    if (free) return base;
  }
  throw new Error("no free port range");
}

describe("PortAllocator", () => {
  it("leases the lowest free port first and the next one after it", async () => {
    const base = await freeRange(5);
    const ports = new PortAllocator({ host: "127.0.0.1", basePort: base, maxPort: base + 4 });
    expect(await ports.lease("a")).toBe(base);
    expect(await ports.lease("b")).toBe(base + 1);
    expect(await ports.lease("a")).toBe(base); // an owner keeps its port
    expect(ports.portOf("b")).toBe(base + 1);
    expect(ports.leasedPorts()).toEqual([
      { owner: "a", port: base },
      { owner: "b", port: base + 1 },
    ]);
  });

  it("skips a port a foreign process holds and reuses a released port", async () => {
    const base = await freeRange(5);
    await hold(base);
    const ports = new PortAllocator({ host: "127.0.0.1", basePort: base, maxPort: base + 4 });
    expect(await ports.lease("a")).toBe(base + 1);
    expect(await ports.lease("b")).toBe(base + 2);
    expect(ports.release("a")).toBe(base + 1);
    expect(ports.portOf("a")).toBeUndefined();
    expect(await ports.lease("c")).toBe(base + 1);
    expect(ports.release("nobody")).toBeUndefined();
  });

  it("checks both loopback addresses for localhost", async () => {
    const base = await freeRange(3);
    await hold(base, "::1");
    await hold(base + 1, "127.0.0.1");
    const ports = new PortAllocator({ host: "localhost", basePort: base, maxPort: base + 2 });
    expect(await ports.lease("a")).toBe(base + 2);
  });

  it("never hands out one port twice to concurrent leases", async () => {
    const base = await freeRange(10);
    const ports = new PortAllocator({ host: "localhost", basePort: base, maxPort: base + 9 });
    const owners = Array.from({ length: 10 }, (_, index) => `agent-${index}`);
    const leased = await Promise.all(owners.map((owner) => ports.lease(owner)));
    expect(new Set(leased).size).toBe(10);
    expect([...leased].sort((a, b) => a - b)).toEqual(owners.map((_, index) => base + index));
  });

  it("throws NO_FREE_PORT when the range is exhausted", async () => {
    const base = await freeRange(2);
    await hold(base + 1);
    const ports = new PortAllocator({ host: "127.0.0.1", basePort: base, maxPort: base + 1 });
    await ports.lease("a");
    const error = await ports.lease("b").catch((caught: unknown) => caught);
    expect(isDeployError(error, "NO_FREE_PORT")).toBe(true);
    expect(String(error)).toContain(`between ${base} and ${base + 1}`);
    // The queue goes on after a failure.
    ports.release("a");
    expect(await ports.lease("b")).toBe(base);
  });

  it("leases a fixed port, naming the agent or process that holds it otherwise", async () => {
    const base = await freeRange(3);
    const ports = new PortAllocator({ host: "127.0.0.1", basePort: base, maxPort: base + 2 });
    expect(await ports.leaseFixed("a", base + 2)).toBe(base + 2);
    expect(await ports.leaseFixed("a", base + 2)).toBe(base + 2);

    const leasedToOther = await ports.leaseFixed("b", base + 2).catch((caught: unknown) => caught);
    expect(isDeployError(leasedToOther, "PORT_UNAVAILABLE")).toBe(true);
    expect(String(leasedToOther)).toContain("already leased to agent 'a'");

    await hold(base);
    const heldByProcess = await ports.leaseFixed("b", base).catch((caught: unknown) => caught);
    expect(isDeployError(heldByProcess, "PORT_UNAVAILABLE")).toBe(true);
    expect(String(heldByProcess)).toContain(`held by process ${process.pid}`);

    // Moving to another fixed port frees the old one.
    expect(await ports.leaseFixed("a", base + 1)).toBe(base + 1);
    expect(ports.leasedPorts()).toEqual([{ owner: "a", port: base + 1 }]);
  });

  it("reserves a port a live adopted agent holds without a bind check", async () => {
    const base = await freeRange(3);
    await hold(base); // the adopted agent's socket
    const ports = new PortAllocator({ host: "127.0.0.1", basePort: base, maxPort: base + 2 });
    ports.reserve("adopted", base);
    expect(ports.portOf("adopted")).toBe(base);
    expect(() => ports.reserve("other", base)).toThrow(/already leased to agent 'adopted'/);
    expect(await ports.lease("new")).toBe(base + 1);
  });

  it("rejects ranges and ports outside 1..65535", () => {
    expect(() => new PortAllocator({ host: "localhost", basePort: 0, maxPort: 10 })).toThrow(
      RangeError,
    );
    expect(() => new PortAllocator({ host: "localhost", basePort: 9000, maxPort: 8000 })).toThrow(
      RangeError,
    );
    const ports = new PortAllocator({ host: "localhost", basePort: 9000, maxPort: 9001 });
    expect(() => ports.reserve("a", 70_000)).toThrow(RangeError);
  });
});
