/**
 * Port leases for agents (SPEC §4): the lowest port of the range that no agent holds and that is
 * bindable right now, so ports held by processes outside the server are skipped and a released
 * port is reused by the next lease. Leases live in memory; the supervisor persists them in the
 * state file and re-`reserve`s them when it adopts live agents after a restart.
 */

import { createServer } from "node:net";
import { DeployError } from "../core/errors.ts";
import { findPortHolder } from "./proc-sockets.ts";

/** Options of {@link PortAllocator}. */
export interface PortAllocatorOptions {
  /**
   * Address agents bind (`{host}`). A bind check uses this host; for `localhost` it checks both
   * 127.0.0.1 and ::1 (where the host has ::1), since an agent may bind either.
   */
  readonly host: string;
  /** First port of the range, inclusive. */
  readonly basePort: number;
  /** Last port of the range, inclusive. */
  readonly maxPort: number;
}

/** One lease, as listed by {@link PortAllocator.leasedPorts}. */
export interface PortLease {
  readonly owner: string;
  readonly port: number;
}

/** Why a bind check failed, for messages. */
type BindVerdict = { readonly ok: true } | { readonly ok: false; readonly code: string };

function assertPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`${what} must be an integer between 1 and 65535, got ${port}`);
  }
}

/** Host part of a URL-style IPv6 literal ("[::1]" → "::1"); others unchanged. */
function bareHost(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/**
 * Leases agent ports from `basePort..maxPort`. One lease per owner (agent name); no port is ever
 * leased to two owners. `lease` and `leaseFixed` are serialised internally, so concurrent callers
 * never receive the same port.
 */
export class PortAllocator {
  readonly #host: string;
  readonly #basePort: number;
  readonly #maxPort: number;
  readonly #portByOwner = new Map<string, number>();
  readonly #ownerByPort = new Map<number, string>();
  /** Tail of the queue that serialises bind checks and the recording that follows them. */
  #queue: Promise<unknown> = Promise.resolve();
  /** Set once a bind on ::1 failed with "address not available": the host has no IPv6 loopback. */
  #noIpv6Loopback = false;

  /** @throws RangeError when the ports are not integers in 1..65535 or `basePort > maxPort`. */
  constructor(options: PortAllocatorOptions) {
    assertPort(options.basePort, "basePort");
    assertPort(options.maxPort, "maxPort");
    if (options.basePort > options.maxPort) {
      throw new RangeError(
        `basePort (${options.basePort}) must not exceed maxPort (${options.maxPort})`,
      );
    }
    this.#host = bareHost(options.host);
    this.#basePort = options.basePort;
    this.#maxPort = options.maxPort;
  }

  /**
   * Leases the lowest port of the range that is neither leased nor held by another process (checked
   * by binding it on the host and closing it again). An owner that already holds a lease gets the
   * same port back, so restarts keep their port.
   * @throws DeployError `NO_FREE_PORT` when every port of the range is leased or held.
   */
  lease(owner: string): Promise<number> {
    return this.#serialised(async () => {
      const existing = this.#portByOwner.get(owner);
      if (existing !== undefined) return existing;
      for (let port = this.#basePort; port <= this.#maxPort; port++) {
        if (this.#ownerByPort.has(port)) continue;
        if (!(await this.#checkBindable(port)).ok) continue;
        // reserve() is synchronous and may have taken the port while we were binding.
        if (this.#ownerByPort.has(port)) continue;
        this.#record(owner, port);
        return port;
      }
      throw new DeployError(
        "NO_FREE_PORT",
        `no free port between ${this.#basePort} and ${this.#maxPort} on ${this.#host} for agent '${owner}'`,
        { agent: owner },
      );
    });
  }

  /**
   * Leases the fixed port `port` (an agent's `[deployment].port`, which need not lie in the range).
   * An owner that held another port moves to this one; its old lease is released.
   * @throws DeployError `PORT_UNAVAILABLE` when another agent leases the port or another process
   *   holds it (the message names the agent, or the pid and command when `/proc` tells).
   * @throws RangeError when `port` is not an integer in 1..65535.
   */
  leaseFixed(owner: string, port: number): Promise<number> {
    assertPort(port, "port");
    return this.#serialised(async () => {
      if (this.#portByOwner.get(owner) === port) return port;
      this.#assertNotLeasedToOther(owner, port);
      const verdict = await this.#checkBindable(port);
      if (!verdict.ok) {
        const holder = findPortHolder(port);
        const who =
          holder === undefined
            ? `another process (${verdict.code})`
            : `process ${holder.pid} (${holder.command})`;
        throw new DeployError(
          "PORT_UNAVAILABLE",
          `port ${port} on ${this.#host} for agent '${owner}' is held by ${who}`,
          { agent: owner, port: String(port) },
        );
      }
      this.#assertNotLeasedToOther(owner, port);
      this.#record(owner, port);
      return port;
    });
  }

  /**
   * Records a lease without a bind check: for an agent adopted after a daemon restart, whose live
   * process already holds the port. An owner that held another port moves to this one.
   * @throws DeployError `PORT_UNAVAILABLE` when another owner leases the port.
   * @throws RangeError when `port` is not an integer in 1..65535.
   */
  reserve(owner: string, port: number): void {
    assertPort(port, "port");
    this.#assertNotLeasedToOther(owner, port);
    this.#record(owner, port);
  }

  /**
   * Ends `owner`'s lease, if any; the port is free for the next lease at once. Call it only once
   * the owner's process group is gone, so a port is never reported free while a child holds it.
   * @returns the released port, or undefined when the owner held none.
   */
  release(owner: string): number | undefined {
    const port = this.#portByOwner.get(owner);
    if (port === undefined) return undefined;
    this.#portByOwner.delete(owner);
    this.#ownerByPort.delete(port);
    return port;
  }

  /** The port leased to `owner`, or undefined. */
  portOf(owner: string): number | undefined {
    return this.#portByOwner.get(owner);
  }

  /** Every lease, sorted by port. */
  leasedPorts(): PortLease[] {
    return [...this.#ownerByPort]
      .map(([port, owner]) => ({ owner, port }))
      .sort((a, b) => a.port - b.port);
  }

  #assertNotLeasedToOther(owner: string, port: number): void {
    const holder = this.#ownerByPort.get(port);
    if (holder !== undefined && holder !== owner) {
      throw new DeployError(
        "PORT_UNAVAILABLE",
        `port ${port} for agent '${owner}' is already leased to agent '${holder}'`,
        { agent: owner, port: String(port), holder },
      );
    }
  }

  #record(owner: string, port: number): void {
    this.release(owner);
    this.#portByOwner.set(owner, port);
    this.#ownerByPort.set(port, owner);
  }

  #serialised<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(task);
    // The queue must go on after a failed task; the caller sees the failure through `result`.
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** Bindable on every address an agent on this host may use. */
  async #checkBindable(port: number): Promise<BindVerdict> {
    if (this.#host !== "localhost") return tryBind(this.#host, port);
    const v4 = await tryBind("127.0.0.1", port);
    if (!v4.ok || this.#noIpv6Loopback) return v4;
    const v6 = await tryBind("::1", port);
    if (!v6.ok && (v6.code === "EADDRNOTAVAIL" || v6.code === "EAFNOSUPPORT")) {
      // No ::1 on this host: no agent can hold it either. Remember, to skip the attempt next time.
      this.#noIpv6Loopback = true;
      return v4;
    }
    return v6;
  }
}

/**
 * Binds a TCP server on host:port and closes it. Node sets SO_REUSEADDR on listening sockets, as do
 * the agents' HTTP servers, so a port in TIME_WAIT counts as free, while any other socket bound or
 * listening on it (including a wildcard or dual-stack one) makes the bind fail.
 */
function tryBind(host: string, port: number): Promise<BindVerdict> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", (error: NodeJS.ErrnoException) => {
      resolve({ ok: false, code: error.code ?? "EUNKNOWN" });
    });
    server.listen({ host, port, exclusive: true }, () => {
      server.close(() => resolve({ ok: true }));
    });
  });
}
