/**
 * Deleting the versions of an installed agent that nothing needs any more (docs/packages.md,
 * "Replacing a running agent"): every version under `.store/<name>/` but the installed one and
 * those a live agent may still run.
 */
import { readdir, readlink, rm } from "node:fs/promises";
import path from "node:path";
import type { AgentBackend } from "../core/agent-backend.ts";
import { isLive } from "../core/agent-state.ts";
import type { AgentStatus } from "../core/agent-status.ts";
import type { PackageLayout } from "./package-layout.ts";

function versionOf(layout: PackageLayout, name: string, dir: string): string | undefined {
  return path.dirname(dir) === layout.versions(name) ? path.basename(dir) : undefined;
}

/**
 * Versions a live agent of `name` may still need: the one its definition in effect comes from
 * (also in BACKOFF, before it is started again), and its process's working directory (an agent
 * adopted after a daemon restart may run a version older than its definition).
 */
async function versionsInUse(
  layout: PackageLayout,
  backend: AgentBackend,
  name: string,
): Promise<string[]> {
  let status: AgentStatus;
  try {
    status = backend.status(name);
  } catch {
    return [];
  }
  if (!isLive(status.state)) return [];
  const versions = [versionOf(layout, name, path.dirname(status.configPath))];
  if (status.pid > 0) {
    try {
      versions.push(versionOf(layout, name, await readlink(`/proc/${status.pid}/cwd`)));
    } catch {
      // The process is gone or /proc is unreadable: its definition's version is kept above.
    }
  }
  return versions.filter((version) => version !== undefined);
}

/**
 * Deletes the versions of `name` (directories and their facts files) that are neither installed
 * nor needed by its live agent, and `.store/<name>/` itself when nothing is left. Call it with
 * the name held (NameLocks), so no install is writing a version meanwhile.
 */
export async function collectVersions(
  layout: PackageLayout,
  backend: AgentBackend,
  name: string,
): Promise<void> {
  const dir = layout.versions(name);
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return;
  }
  const keep = new Set<string>();
  const current = await layout.current(name);
  if (current !== undefined) keep.add(path.basename(current));
  for (const version of await versionsInUse(layout, backend, name)) keep.add(version);
  for (const entry of entries) {
    const version = entry.endsWith(".json") ? entry.slice(0, -".json".length) : entry;
    if (!keep.has(version)) await rm(path.join(dir, entry), { recursive: true, force: true });
  }
  if (keep.size === 0) await rm(dir, { recursive: true, force: true });
}
