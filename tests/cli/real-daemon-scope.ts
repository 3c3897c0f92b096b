/**
 * What a test file that drives the real daemon through the real CLI starts, and the one teardown
 * that ends it all after each test: CLI children, daemons (which must stop with status 0), agent
 * process groups (any still alive is a leak: killed, then the test fails), and temp workspaces.
 */
import { afterEach, expect } from "vitest";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import type { Daemon } from "../e2e/daemon.ts";
import { Children } from "./helpers.ts";

export interface RealDaemonScope {
  readonly children: Children;
  readonly daemons: Daemon[];
  readonly cleanups: (() => Promise<void>)[];
  /** Agent pids (process group ids) the test saw: none may outlive it. */
  readonly pids: Set<number>;
}

/** Registers the teardown with `afterEach`; call once at the top of a test file. */
export function realDaemonScope(): RealDaemonScope {
  const scope: RealDaemonScope = {
    children: new Children(),
    daemons: [],
    cleanups: [],
    pids: new Set(),
  };
  afterEach(async () => {
    await scope.children.killAll();
    for (const daemon of scope.daemons.splice(0)) expect(await daemon.stop("SIGTERM")).toBe(0);
    const left = [...scope.pids].filter(isGroupAlive);
    for (const pid of left) process.kill(-pid, "SIGKILL");
    scope.pids.clear();
    for (const cleanup of scope.cleanups.splice(0)) await cleanup();
    expect(left).toEqual([]);
  });
  return scope;
}
