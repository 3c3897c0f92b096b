import { readFile, readlink, rm } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ProvisioningStep } from "../../src/core/agent-status.ts";
import { DeployError } from "../../src/core/errors.ts";
import type { ProvisionOptions } from "../../src/packages/provision.ts";
import { deferred } from "../rpc/helpers.ts";
import { packageToml, sha256, tarGz, zip } from "./archives.ts";
import { createPackageHarness, EMPTY_TREE, FAULT_COMMAND, type PackageHarness } from "./harness.ts";

let h: PackageHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

function greeter(version: string, extra = ""): Buffer {
  return tarGz([
    { name: "greeter/", type: "Directory" },
    { name: "greeter/agent.toml", content: packageToml(undefined, FAULT_COMMAND, extra) },
    { name: "greeter/VERSION", content: version },
    { name: "greeter/bin/run", content: "#!/bin/sh\n", mode: 0o755 },
  ]);
}

async function failure(promise: Promise<unknown>): Promise<DeployError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DeployError);
  return error as DeployError;
}

describe("installing a package", () => {
  it("installs a .tar.gz under packages/<name>, named after its folder, with its source in status", async () => {
    h = await createPackageHarness();
    const archive = greeter("1");
    const result = await h.install(archive);
    expect(result.outcome).toBe("INSTALLED");
    expect(result.status).toMatchObject({ name: "greeter", state: "DISCOVERED" });
    expect(result.status.installedPackage).toMatchObject({
      sha256: sha256(archive),
      format: "tar.gz",
      archiveBytes: archive.length,
      entries: 4,
      provisioned: [],
    });
    const link = path.join(h.stateDir, "packages", "greeter");
    expect(await readFile(path.join(link, "VERSION"), "utf8")).toBe("1");
    expect(
      result.status.configPath.startsWith(path.join(h.stateDir, "packages", ".store", "greeter")),
    ).toBe(true);
    // Modes: the executable bit is kept, nothing else.
    const { mode } = await import("node:fs/promises").then((fs) =>
      fs.stat(path.join(link, "bin/run")),
    );
    expect(mode & 0o7777).toBe(0o755);
    expect(await h.tree()).toEqual(
      expect.arrayContaining([".staging/", ".store/", ".store/greeter/", "greeter ->"]),
    );
    expect((await h.tree()).filter((p) => p.startsWith(".staging/") && p !== ".staging/")).toEqual(
      [],
    );
  });

  it("installs a .zip with the definition at its root", async () => {
    h = await createPackageHarness();
    const archive = zip([
      {
        name: "agent.json",
        content: JSON.stringify({ name: "zipped", deployment: { command: FAULT_COMMAND } }),
      },
      { name: "lib/", content: "" },
      { name: "lib/data.txt", content: "data" },
    ]);
    const result = await h.install(archive, { format: "zip" });
    expect(result.status.name).toBe("zipped");
    expect(result.status.installedPackage?.format).toBe("zip");
    expect(await readFile(path.join(h.stateDir, "packages/zipped/lib/data.txt"), "utf8")).toBe(
      "data",
    );
  });

  it("answers ALREADY_INSTALLED for the same archive, and needs force for another", async () => {
    h = await createPackageHarness();
    await h.install(greeter("1"));
    expect((await h.install(greeter("1"))).outcome).toBe("ALREADY_INSTALLED");
    const refused = await failure(h.install(greeter("2")));
    expect(refused.code).toBe("PACKAGE_EXISTS");
    expect(refused.message).toMatch(/install with force to replace it/);
    expect(await readFile(path.join(h.stateDir, "packages/greeter/VERSION"), "utf8")).toBe("1");
    expect((await h.install(greeter("2"), { force: true })).outcome).toBe("REPLACED");
    expect(await readFile(path.join(h.stateDir, "packages/greeter/VERSION"), "utf8")).toBe("2");
    // The replaced version is collected: the agent was not running.
    const versions = (await h.tree()).filter((p) => /^\.store\/greeter\/v[^/]*\/$/.test(p));
    expect(versions).toHaveLength(1);
  });

  it("refuses a name the agents directory defines", async () => {
    h = await createPackageHarness({ agents: { greeter: packageToml("greeter", FAULT_COMMAND) } });
    const error = await failure(h.install(greeter("1")));
    expect(error.code).toBe("AGENT_NAME_TAKEN");
    expect(error.message).toContain(path.join(h.agentsDir, "greeter", "agent.toml"));
    expect(await h.tree()).toEqual(EMPTY_TREE);
  });

  it("keeps a running agent on its old files until its next start, then collects them", async () => {
    h = await createPackageHarness();
    const first = await h.install(greeter("1"), { start: true });
    expect(first.status.state).toBe("RUNNING");
    const oldDir = path.dirname(first.status.configPath);
    const replaced = await h.install(greeter("2"), { force: true });
    expect(replaced.outcome).toBe("REPLACED");
    // Still running the first version, from its own directory.
    expect(replaced.status.pid).toBe(first.status.pid);
    expect(replaced.status.installedPackage?.sha256).toBe(sha256(greeter("1")));
    expect(await readlink(`/proc/${first.status.pid}/cwd`)).toBe(oldDir);
    expect(await readFile(path.join(oldDir, "VERSION"), "utf8")).toBe("1");
    // The next start runs the new files; the old version goes once nothing runs it.
    const restarted = await h.registry.restart("greeter");
    expect(restarted.installedPackage?.sha256).toBe(sha256(greeter("2")));
    expect(await readlink(`/proc/${restarted.pid}/cwd`)).not.toBe(oldDir);
    await h.registry.undeploy("greeter");
    await expect
      .poll(async () =>
        (await h?.tree())?.some((p) =>
          p.startsWith(path.relative(path.join(h?.stateDir ?? "", "packages"), oldDir)),
        ),
      )
      .toBe(false);
  });

  it("reports a start that fails after the install, which stays installed", async () => {
    h = await createPackageHarness();
    const crashing = tarGz([
      {
        name: "crasher/agent.toml",
        content: packageToml(
          undefined,
          FAULT_COMMAND,
          '[deployment.env]\nFAULT = "crash-at-start"',
        ),
      },
    ]);
    const error = await failure(h.install(crashing, { start: true }));
    expect(error.code).toBe("AGENT_EXITED_DURING_START");
    expect(error.message).toMatch(/^agent crasher is installed, but it did not start: /);
    expect(error.metadata).toMatchObject({ agent: "crasher", installed: "true" });
    expect(h.registry.status("crasher").installedPackage?.sha256).toBe(sha256(crashing));
  });

  it("restarts a live agent when a replacement is installed with start", async () => {
    h = await createPackageHarness();
    const first = await h.install(greeter("1"), { start: true });
    const second = await h.install(greeter("2"), { force: true, start: true });
    expect(second.status.state).toBe("RUNNING");
    expect(second.status.pid).not.toBe(first.status.pid);
    expect(second.status.installedPackage?.sha256).toBe(sha256(greeter("2")));
  });

  it("lets one of two installs of a name win; the other fails clearly and nothing is half-written", async () => {
    const gate = deferred();
    const entered = deferred();
    h = await createPackageHarness({
      store: {
        provision: async (_steps: readonly ProvisioningStep[], _options: ProvisionOptions) => {
          entered.resolve();
          await gate.promise;
        },
      },
    });
    const winner = h.install(greeter("1"));
    await entered.promise;
    const loser = await failure(h.install(greeter("2")));
    expect(loser.code).toBe("INSTALL_IN_PROGRESS");
    expect(loser.message).toMatch(/another install of agent greeter is under way/);
    gate.resolve();
    expect((await winner).outcome).toBe("INSTALLED");
    expect(await readFile(path.join(h.stateDir, "packages/greeter/VERSION"), "utf8")).toBe("1");
    expect((await h.tree()).filter((p) => p.startsWith(".staging/") && p !== ".staging/")).toEqual(
      [],
    );
  });

  it("removes everything when provisioning fails or the install is abandoned during it", async () => {
    const controller = new AbortController();
    h = await createPackageHarness({
      store: {
        provision: async (_steps, options) => {
          if (options.signal === controller.signal) {
            controller.abort(new DOMException("gone", "AbortError"));
            throw options.signal.reason;
          }
          throw new DeployError("PROVISIONING_FAILED", "npm exploded");
        },
      },
    });
    expect((await failure(h.install(greeter("1")))).code).toBe("PROVISIONING_FAILED");
    expect(await h.tree()).toEqual(EMPTY_TREE);
    const aborted = await h.install(greeter("1"), {}, { signal: controller.signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((aborted as DOMException).name).toBe("AbortError");
    expect(await h.tree()).toEqual(EMPTY_TREE);
  });

  it("never deletes the files of a live agent when a later install of its name fails", async () => {
    let failProvisioning = false;
    h = await createPackageHarness({
      store: {
        provision: async () => {
          if (failProvisioning) throw new DeployError("PROVISIONING_FAILED", "npm exploded");
        },
      },
    });
    const { status } = await h.install(greeter("1"), { start: true });
    const runningDir = path.dirname(status.configPath);
    // The link goes by hand; the agent keeps running from its version.
    await rm(path.join(h.stateDir, "packages", "greeter"));
    await h.catalog.refreshPackages();
    expect(h.registry.status("greeter")).toMatchObject({
      state: "RUNNING",
      definitionRemoved: true,
    });
    failProvisioning = true;
    expect((await failure(h.install(greeter("2")))).code).toBe("PROVISIONING_FAILED");
    expect(await readFile(path.join(runningDir, "VERSION"), "utf8")).toBe("1");
    expect(h.registry.status("greeter").state).toBe("RUNNING");
  });

  it("finds installed packages again after a restart, with their source", async () => {
    h = await createPackageHarness();
    const archive = greeter("1");
    await h.install(archive);
    const second = await h.reopen();
    expect(second.registry.status("greeter").installedPackage?.sha256).toBe(sha256(archive));
  });
});

describe("removing a package", () => {
  it("stops the running agent and deletes its files", async () => {
    h = await createPackageHarness();
    const { status } = await h.install(greeter("1"), { start: true });
    const removed = await h.store.remove("greeter");
    expect(removed.state).toBe("STOPPED");
    expect(h.registry.has("greeter")).toBe(false);
    expect(() => process.kill(status.pid, 0)).toThrow();
    expect(await h.tree()).toEqual(EMPTY_TREE);
  });

  it("refuses agents of the agents directory and unknown agents", async () => {
    h = await createPackageHarness({ agents: { local: packageToml("local", FAULT_COMMAND) } });
    expect((await failure(h.store.remove("local"))).code).toBe("AGENT_NOT_INSTALLED");
    expect((await failure(h.store.remove("nobody"))).code).toBe("AGENT_NOT_FOUND");
    expect((await failure(h.store.remove("../etc"))).code).toBe("INVALID_AGENT_NAME");
  });
});
