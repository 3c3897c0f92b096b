/** `atoll-deploy render` as a user runs it: the real executable on an agents directory. */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { Children, cliEnv, runCli } from "./helpers.ts";

const children = new Children();
const dirs: string[] = [];
afterEach(async () => {
  await children.killAll();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function agentsDir(agents: Record<string, string>, extraFiles: Record<string, string> = {}) {
  const root = await mkdtemp(path.join(os.tmpdir(), "atoll-render-"));
  dirs.push(root);
  for (const [dir, text] of Object.entries(agents)) {
    await mkdir(path.join(root, dir));
    await writeFile(path.join(root, dir, "agent.toml"), text);
  }
  for (const [file, text] of Object.entries(extraFiles))
    await writeFile(path.join(root, file), text);
  return root;
}

describe("atoll-deploy render", () => {
  it("prints every valid agent's objects, skipping invalid ones with a notice", async () => {
    const dir = await agentsDir(
      {
        alpha: '[agent]\nname = "alpha"\n',
        beta: '[agent]\nname = "beta"\n',
        broken: "[deployment]\nport = -1\n",
      },
      { "beta/prompt.txt": "hello" },
    );
    const result = await runCli(
      children,
      ["render", "--agents-dir", dir, "--namespace", "agents", "--image", "reg/atoll-agent:9"],
      cliEnv(),
    );
    expect(result.code).toBe(0);
    const docs = parseAllDocuments(result.stdout).map((d) => d.toJS());
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}/${d.metadata.namespace}`)).toEqual([
      "ConfigMap/atoll-alpha/agents",
      "Deployment/atoll-alpha/agents",
      "Service/atoll-alpha/agents",
      "ConfigMap/atoll-beta/agents",
      "Deployment/atoll-beta/agents",
      "Service/atoll-beta/agents",
    ]);
    expect(docs[1].spec.template.spec.containers[0].image).toBe("reg/atoll-agent:9");
    expect(result.stderr).toContain("! Agent broken: skipped, its definition is invalid:");
    expect(result.stderr).toContain(
      "! Agent beta: only agent.toml is shipped to the cluster; prompt.txt",
    );
  });

  it("renders only the named agents, with the default image of the package version", async () => {
    const dir = await agentsDir({
      alpha: '[agent]\nname = "alpha"\n',
      beta: '[agent]\nname = "beta"\n',
    });
    const result = await runCli(
      children,
      ["render", "beta"],
      cliEnv({ ATOLL_DEPLOY_AGENTS_DIRECTORY: dir }),
    );
    expect(result.code).toBe(0);
    const docs = parseAllDocuments(result.stdout).map((d) => d.toJS());
    expect(docs).toHaveLength(3);
    expect(docs[1].spec.template.spec.containers[0].image).toMatch(/^atoll-agent:\d+\.\d+\.\d+/);
    expect(docs[0].metadata.namespace).toBeUndefined();
  });

  it("prints nothing and exits 1 when one agent is refused, naming file and key", async () => {
    const dir = await agentsDir({
      good: '[agent]\nname = "good"\n',
      stays: '[agent]\nname = "stays"\n[deployment]\nauto_restart = false\n',
    });
    const result = await runCli(children, ["render", "--agents-dir", dir], cliEnv());
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      `✗ ${path.join(dir, "stays", "agent.toml")}: deployment.auto_restart: false cannot be run faithfully: a Deployment always restarts an agent that exits or fails (restartPolicy Always); remove the key or set it to true\n`,
    );
  });

  it("exits 1 for an unknown or invalid named agent and for an empty directory", async () => {
    const dir = await agentsDir({ broken: "[deployment]\nport = -1\n" });
    const unknown = await runCli(children, ["render", "nope", "--agents-dir", dir], cliEnv());
    expect(unknown).toMatchObject({ code: 1, stdout: "" });
    expect(unknown.stderr).toContain(`agent nope not found in ${dir}`);
    const invalid = await runCli(children, ["render", "broken", "--agents-dir", dir], cliEnv());
    expect(invalid).toMatchObject({ code: 1, stdout: "" });
    expect(invalid.stderr).toContain("deployment.port");
    const empty = await runCli(children, ["render", "--agents-dir", dir], cliEnv());
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain("no valid agent definitions");
    const missing = await runCli(
      children,
      ["render", "--agents-dir", path.join(dir, "x")],
      cliEnv(),
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("does not exist");
  });
});
