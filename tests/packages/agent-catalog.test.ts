import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { discoverAgents } from "../../src/config/discovery.ts";
import type { ProvisioningStep } from "../../src/core/agent-status.ts";
import { DeployError } from "../../src/core/errors.ts";
import { withVirtualEnv } from "../../src/packages/agent-catalog.ts";
import { deferred } from "../rpc/helpers.ts";
import { packageToml, tarGz } from "./archives.ts";
import { createPackageHarness, FAULT_COMMAND, type PackageHarness } from "./harness.ts";

let h: PackageHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

function named(name: string): Buffer {
  return tarGz([{ name: `${name}/agent.toml`, content: packageToml(name, FAULT_COMMAND) }]);
}

describe("AgentCatalog", () => {
  it("watches the packages directory: a package whose link goes away is forgotten", async () => {
    h = await createPackageHarness();
    await h.install(named("watched"));
    const lifetime = new AbortController();
    try {
      await h.catalog.watchPackages(lifetime.signal, () => {});
      await rm(path.join(h.stateDir, "packages", "watched"));
      await expect.poll(() => h?.registry.has("watched"), { timeout: 10_000 }).toBe(false);
    } finally {
      lifetime.abort();
    }
  });

  it("turns a name defined in both directories INVALID, naming both files", async () => {
    h = await createPackageHarness();
    await h.install(named("twice"));
    await mkdir(path.join(h.agentsDir, "twice"));
    await writeFile(
      path.join(h.agentsDir, "twice", "agent.toml"),
      packageToml("twice", FAULT_COMMAND),
    );
    h.catalog.setDirectory(await discoverAgents(h.agentsDir));
    const status = h.registry.status("twice");
    expect(status.state).toBe("INVALID");
    expect(status.stateMessage).toContain(path.join(h.agentsDir, "twice", "agent.toml"));
    expect(status.stateMessage).toMatch(/duplicate agent name "twice"/);
  });

  it("points python at the package's virtual environment", () => {
    const def = {
      name: "py",
      version: "",
      description: "",
      capabilities: [],
      configPath: "/pkg/agent.toml",
      dir: "/pkg",
      deployment: { command: ["python", "main.py"], env: {} },
      resources: {},
      warnings: [],
    } as unknown as Parameters<typeof withVirtualEnv>[0];
    const venv = withVirtualEnv(def, "/usr/bin:/bin");
    expect(venv.deployment.command).toEqual(["/pkg/.venv/bin/python", "main.py"]);
    expect(venv.deployment.env).toEqual({
      VIRTUAL_ENV: "/pkg/.venv",
      PATH: "/pkg/.venv/bin:/usr/bin:/bin",
    });
    const other = withVirtualEnv(
      {
        ...def,
        deployment: { ...def.deployment, command: ["uvicorn", "app"], env: { PATH: "/opt/bin" } },
      },
      "/usr/bin",
    );
    expect(other.deployment.command).toEqual(["uvicorn", "app"]);
    expect(other.deployment.env.PATH).toBe("/pkg/.venv/bin:/opt/bin");
  });
});

describe("PackageStore limits", () => {
  it("refuses more installs at once than allowed", async () => {
    const gate = deferred();
    const entered = deferred();
    h = await createPackageHarness({
      store: {
        maxConcurrentInstalls: 1,
        provision: async (_steps: readonly ProvisioningStep[]) => {
          entered.resolve();
          await gate.promise;
        },
      },
    });
    const first = h.install(named("one"));
    await entered.promise;
    const error = await h.install(named("two")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeployError);
    expect((error as DeployError).code).toBe("TOO_MANY_INSTALLS");
    gate.resolve();
    expect((await first).outcome).toBe("INSTALLED");
  });
});
