import { chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { DiscoveredAgent } from "../../src/config/agent-definition.ts";
import { ConfigError } from "../../src/config/config-error.ts";
import { discoverAgents, MAX_DEFINITION_BYTES } from "../../src/config/discovery.ts";
import { makeTempDir, writeTree } from "./temp-dir.ts";

let root: string;
let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ dir: root, cleanup } = await makeTempDir());
});
afterEach(async () => {
  await cleanup();
});

function summary(agent: DiscoveredAgent): { kind: string; name: string; configPath: string } {
  return agent.kind === "valid"
    ? { kind: "valid", name: agent.definition.name, configPath: agent.definition.configPath }
    : { kind: "invalid", name: agent.name, configPath: agent.configPath };
}

function only<T>(items: readonly T[]): T {
  expect(items).toHaveLength(1);
  return items[0] as T;
}

describe("discoverAgents", () => {
  it("finds agents in non-hidden subdirectories, sorted by directory name", async () => {
    await writeTree(root, "zeta/agent.toml", "");
    await writeTree(root, "alpha/agent.json", "{}");
    await writeTree(root, "Mid/agent.toml", "");
    await writeTree(root, ".hidden/agent.toml", "");
    await writeTree(root, "no-config/README.md", "nothing here");
    await mkdir(path.join(root, "empty"));
    await writeTree(root, "agent.toml", "a plain file at the top is not an agent");
    const result = await discoverAgents(root);
    expect(result.warnings).toEqual([]);
    expect(result.agents.map(summary)).toEqual([
      { kind: "valid", name: "Mid", configPath: path.join(root, "Mid/agent.toml") },
      { kind: "valid", name: "alpha", configPath: path.join(root, "alpha/agent.json") },
      { kind: "valid", name: "zeta", configPath: path.join(root, "zeta/agent.toml") },
    ]);
  });

  it("returns an empty list for an empty directory", async () => {
    expect(await discoverAgents(root)).toEqual({ agents: [], warnings: [] });
  });

  it("prefers agent.toml over agent.json and warns naming the ignored file", async () => {
    await writeTree(root, "both/agent.toml", '[agent]\nname = "from-toml"\n');
    await writeTree(root, "both/agent.json", '{"agent": {"name": "from-json"}}');
    const agent = only((await discoverAgents(root)).agents);
    if (agent.kind !== "valid") throw new Error(agent.message);
    expect(agent.definition.name).toBe("from-toml");
    expect(agent.definition.warnings).toEqual([
      `${path.join(root, "both/agent.json")} is ignored: agent.toml takes precedence`,
    ]);
  });

  it("keeps the precedence warning on an invalid agent.toml", async () => {
    await writeTree(root, "both/agent.toml", "[deployment\n");
    await writeTree(root, "both/agent.json", "{}");
    const agent = only((await discoverAgents(root)).agents);
    expect(agent.kind).toBe("invalid");
    if (agent.kind !== "invalid") return;
    expect(agent.message).toContain(`${path.join(root, "both/agent.toml")}: line 1`);
    expect(agent.warnings).toEqual([
      `${path.join(root, "both/agent.json")} is ignored: agent.toml takes precedence`,
    ]);
  });

  it("lists an invalid definition with its message and leaves the others alone", async () => {
    await writeTree(root, "good/agent.toml", "[deployment]\nport = 8200\n");
    await writeTree(root, "bad/agent.toml", '[deployment]\nport = "abc"\n');
    const { agents } = await discoverAgents(root);
    expect(agents.map(summary)).toEqual([
      { kind: "invalid", name: "bad", configPath: path.join(root, "bad/agent.toml") },
      { kind: "valid", name: "good", configPath: path.join(root, "good/agent.toml") },
    ]);
    const bad = agents[0];
    expect(bad?.kind === "invalid" && bad.message).toBe(
      `${path.join(root, "bad/agent.toml")}: deployment.port: must be an integer between 1 and 65535, or 0 to lease a free port, got "abc"`,
    );
    expect(bad?.kind === "invalid" && bad.dir).toBe(path.join(root, "bad"));
  });

  it("marks every agent sharing a name invalid, each naming the other files", async () => {
    await writeTree(root, "one/agent.toml", '[agent]\nname = "same"\n');
    await writeTree(root, "two/agent.json", '{"name": "same"}');
    await writeTree(root, "three/agent.toml", '[agent]\nname = "same"\n');
    await writeTree(root, "other/agent.toml", "");
    const { agents } = await discoverAgents(root);
    const one = path.join(root, "one/agent.toml");
    const two = path.join(root, "two/agent.json");
    const three = path.join(root, "three/agent.toml");
    expect(agents.map((a) => [a.kind, a.kind === "invalid" ? a.message : ""])).toEqual([
      [
        "invalid",
        `${one}: agent.name: duplicate agent name "same", also defined by ${three}, ${two}`,
      ],
      ["valid", ""],
      [
        "invalid",
        `${three}: agent.name: duplicate agent name "same", also defined by ${one}, ${two}`,
      ],
      [
        "invalid",
        `${two}: agent.name: duplicate agent name "same", also defined by ${one}, ${three}`,
      ],
    ]);
    expect(agents.map(summary).map((a) => a.name)).toEqual(["same", "other", "same", "same"]);
  });

  it("treats a directory name that equals another agent's declared name as a duplicate", async () => {
    await writeTree(root, "alpha/agent.toml", "");
    await writeTree(root, "beta/agent.toml", '[agent]\nname = "alpha"\n');
    const { agents } = await discoverAgents(root);
    expect(agents.map((a) => a.kind)).toEqual(["invalid", "invalid"]);
  });

  it("keeps the original problem of an invalid duplicate", async () => {
    await writeTree(root, "alpha/agent.toml", "[deployment]\nport = -1\n");
    await writeTree(root, "beta/agent.toml", '[agent]\nname = "alpha"\n');
    const first = (await discoverAgents(root)).agents[0];
    expect(first?.kind === "invalid" && first.message).toMatch(
      /deployment\.port: .*; agent\.name: duplicate agent name "alpha", also defined by .*beta/,
    );
  });

  it("follows a symbolic link to an agent directory and ignores a dangling one", async () => {
    const { dir: elsewhere, cleanup: cleanupElsewhere } = await makeTempDir();
    try {
      await writeTree(elsewhere, "agent.toml", '[agent]\nname = "linked"\n');
      await symlink(elsewhere, path.join(root, "linked"));
      await symlink(path.join(root, "missing-target"), path.join(root, "dangling"));
      const agent = only((await discoverAgents(root)).agents);
      expect(summary(agent)).toEqual({
        kind: "valid",
        name: "linked",
        configPath: path.join(root, "linked/agent.toml"),
      });
    } finally {
      await cleanupElsewhere();
    }
  });

  it("reports a definition that is not a regular file", async () => {
    await mkdir(path.join(root, "weird/agent.toml"), { recursive: true });
    const agent = only((await discoverAgents(root)).agents);
    expect(agent.kind === "invalid" && agent.message).toBe(
      `${path.join(root, "weird/agent.toml")}: is not a regular file`,
    );
  });

  it("refuses a definition larger than the limit without reading it", async () => {
    await writeTree(root, "huge/agent.toml", `# ${"x".repeat(MAX_DEFINITION_BYTES)}\n`);
    const agent = only((await discoverAgents(root)).agents);
    expect(agent.kind === "invalid" && agent.message).toMatch(
      /agent\.toml: is larger than 1048576 bytes/,
    );
  });

  it.skipIf(process.getuid?.() === 0)(
    "reports an unreadable definition with the file and the OS error",
    async () => {
      const file = await writeTree(root, "locked/agent.toml", "");
      await chmod(file, 0o000);
      const agent = only((await discoverAgents(root)).agents);
      expect(agent.kind === "invalid" && agent.message).toBe(
        `${file}: cannot read: permission denied (EACCES)`,
      );
    },
  );

  it("lists a directory with an invalid name under its escaped name", async () => {
    await writeTree(root, "my agent/agent.toml", "");
    await writeTree(root, "evil\nname/agent.toml", "");
    const { agents } = await discoverAgents(root);
    expect(agents.map(summary).map((a) => [a.kind, a.name])).toEqual([
      ["invalid", "evil\\nname"],
      ["invalid", "my agent"],
    ]);
    for (const agent of agents) {
      expect(agent.kind === "invalid" && agent.message).not.toContain("\n");
    }
  });

  it("accepts a directory with an invalid name whose definition declares a valid one", async () => {
    await writeTree(root, "my agent/agent.toml", '[agent]\nname = "my-agent"\n');
    const agent = only((await discoverAgents(root)).agents);
    expect(agent.kind === "valid" && agent.definition.dir).toBe(path.join(root, "my agent"));
  });

  it("freezes its results", async () => {
    await writeTree(root, "a/agent.toml", "");
    await writeTree(root, "b/agent.toml", "port = ");
    const result = await discoverAgents(root);
    expect(Object.isFrozen(result)).toBe(true);
    expect(Object.isFrozen(result.agents)).toBe(true);
    for (const agent of result.agents) expect(Object.isFrozen(agent)).toBe(true);
  });

  it("throws a ConfigError for a missing agents directory", async () => {
    const missing = path.join(root, "atoll_agents");
    const error = await discoverAgents(missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`agents directory ${missing} does not exist`);
    expect((error as ConfigError).file).toBe(missing);
  });

  it("throws a ConfigError when the agents directory is a file", async () => {
    const file = path.join(root, "file");
    await writeFile(file, "");
    await expect(discoverAgents(file)).rejects.toThrow(
      `agents directory ${file} is not a directory`,
    );
  });

  it("resolves a relative agents directory against the working directory", async () => {
    await writeTree(root, "rel/agent.toml", "");
    const relative = path.relative(process.cwd(), root);
    const agent = only((await discoverAgents(relative)).agents);
    expect(agent.kind === "valid" && agent.definition.configPath).toBe(
      path.join(root, "rel/agent.toml"),
    );
  });
});

describe("discoverAgents and symbolic links", () => {
  const extraCleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of extraCleanups.splice(0)) await cleanup();
  });

  it("refuses a definition that links outside its agent folder, without reading or quoting it", async () => {
    const outside = await makeTempDir();
    extraCleanups.push(outside.cleanup);
    const tokenFile = path.join(outside.dir, "token");
    await writeFile(tokenFile, "s3cret-token-abc\n");
    await mkdir(path.join(root, "leaky"));
    await symlink(tokenFile, path.join(root, "leaky", "agent.json"));
    const agent = only((await discoverAgents(root)).agents);
    expect(agent.kind).toBe("invalid");
    if (agent.kind !== "invalid") return;
    expect(agent.message).toBe(
      `${path.join(root, "leaky", "agent.json")}: is a symbolic link to a file outside its agent folder; refused (a definition may only link within its folder)`,
    );
    expect(agent.message).not.toContain("s3cret");
  });

  it("refuses a link to a sibling agent's definition", async () => {
    await writeTree(root, "real/agent.toml", '[agent]\nname = "real"\n');
    await mkdir(path.join(root, "copy"));
    await symlink(path.join(root, "real", "agent.toml"), path.join(root, "copy", "agent.toml"));
    const copy = (await discoverAgents(root)).agents.find((a) =>
      summary(a).configPath.includes("copy"),
    );
    expect(copy?.kind).toBe("invalid");
  });

  it("follows a definition that links to a file inside its own folder", async () => {
    await writeTree(root, "linked/versions/v2.toml", '[agent]\nname = "linked"\n');
    await symlink(path.join("versions", "v2.toml"), path.join(root, "linked", "agent.toml"));
    expect(summary(only((await discoverAgents(root)).agents))).toMatchObject({
      kind: "valid",
      name: "linked",
    });
  });

  it("still accepts an agent folder that is itself a link, with its definition inside", async () => {
    const outside = await makeTempDir();
    extraCleanups.push(outside.cleanup);
    const elsewhere = outside.dir;
    await writeTree(elsewhere, "agent.toml", '[agent]\nname = "far"\n');
    await symlink(elsewhere, path.join(root, "far"));
    expect(summary(only((await discoverAgents(root)).agents))).toMatchObject({
      kind: "valid",
      name: "far",
    });
  });

  it("never quotes the file's content in a JSON syntax error", async () => {
    await writeTree(root, "secretive/agent.json", "s3cret-token-abc\n");
    await writeTree(root, "nested/agent.json", '{\n  "agent": { "name": s3cret }\n}\n');
    const messages = (await discoverAgents(root)).agents.map((a) =>
      a.kind === "invalid" ? a.message : "",
    );
    expect(messages).toEqual([
      `${path.join(root, "nested", "agent.json")}: line 2, column 22: invalid JSON: unexpected character`,
      `${path.join(root, "secretive", "agent.json")}: line 1, column 1: invalid JSON: unexpected character`,
    ]);
  });
});
