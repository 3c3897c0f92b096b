import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  ContextsFileError,
  contextsFilePath,
  loadContextsFile,
  parseContextsFile,
  saveContextsFile,
  withContext,
  withoutContext,
} from "../../src/cli/client-contexts.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-contexts-"));
  dirs.push(dir);
  return dir;
}

const HOME = "/home/op";
const FILE = "/home/op/.config/atoll-deploy/contexts.toml";

describe("the contexts file", () => {
  it("lives under an absolute XDG_CONFIG_HOME, else under ~/.config", () => {
    expect(contextsFilePath({ XDG_CONFIG_HOME: "/x/cfg" }, HOME)).toBe(
      "/x/cfg/atoll-deploy/contexts.toml",
    );
    expect(contextsFilePath({ XDG_CONFIG_HOME: "relative" }, HOME)).toBe(FILE);
    expect(contextsFilePath({}, HOME)).toBe(FILE);
  });

  it("reads contexts sorted by name, with paths made absolute against the file and home", () => {
    const file = parseContextsFile(
      `current = "b"
[contexts.b]
server = "10.0.0.5:50051"
token_file = "b.token"
tls_ca = "~/ca.pem"
[contexts.a]
server = "unix:/run/atoll.sock"
tls_cert = "/etc/c.pem"
tls_key = "/etc/k.pem"
`,
      FILE,
      HOME,
    );
    expect(file.current).toBe("b");
    expect(file.contexts.map((c) => c.name)).toEqual(["a", "b"]);
    expect(file.contexts[1]).toEqual({
      name: "b",
      server: "10.0.0.5:50051",
      tokenFile: "/home/op/.config/atoll-deploy/b.token",
      tlsCa: "/home/op/ca.pem",
      tlsCert: undefined,
      tlsKey: undefined,
    });
  });

  it.each([
    ["server = 1", "contexts.a.server: must be a non-empty string"],
    ['servr = "x"', "contexts.a.servr: unknown key"],
    ['server = "x"\ntls_cert = "c"', "contexts.a: tls_cert and tls_key go together"],
    ["", "contexts.a.server: is missing"],
  ])("refuses a context holding %j, naming the file and key", (body, message) => {
    expect(() => parseContextsFile(`[contexts.a]\n${body}\n`, FILE, HOME)).toThrow(
      `${FILE}: ${message}`,
    );
  });

  it("refuses a current context that is not defined, bad TOML and stray keys", () => {
    expect(() => parseContextsFile('current = "x"\n', FILE, HOME)).toThrow(
      `${FILE}: current: names context "x", which is not defined`,
    );
    expect(() => parseContextsFile("current = \n", FILE, HOME)).toThrow(/line 1, column \d+/);
    expect(() => parseContextsFile('server = "x"\n', FILE, HOME)).toThrow(ContextsFileError);
    expect(() => parseContextsFile('[contexts."bad name"]\nserver = "x"\n', FILE, HOME)).toThrow(
      /invalid context name/,
    );
  });

  it("reads a missing file as no contexts", async () => {
    const dir = await tempDir();
    const file = await loadContextsFile(path.join(dir, "none", "contexts.toml"), HOME);
    expect(file.contexts).toEqual([]);
    expect(file.current).toBeUndefined();
  });

  it("writes atomically with mode 0600 and reads back what it wrote", async () => {
    const dir = await tempDir();
    const filePath = path.join(dir, "cfg", "atoll-deploy", "contexts.toml");
    let file = await loadContextsFile(filePath, HOME);
    file = withContext(
      { ...file, current: "prod" },
      {
        name: "prod",
        server: "10.0.0.5:50051",
        tokenFile: "/t/prod token",
        tlsCa: undefined,
        tlsCert: undefined,
        tlsKey: undefined,
      },
    );
    file = withContext(file, {
      name: "dev.local",
      server: "127.0.0.1:50051",
      tokenFile: undefined,
      tlsCa: "/t/ca.pem",
      tlsCert: "/t/c.pem",
      tlsKey: "/t/k.pem",
    });
    await saveContextsFile(file);
    expect((await stat(filePath)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(filePath))).mode & 0o777).toBe(0o700);
    expect(await readdir(path.dirname(filePath))).toEqual(["contexts.toml"]);
    const back = await loadContextsFile(filePath, HOME);
    expect(back).toEqual(file);

    const removed = withoutContext(back, "prod");
    expect(removed.current).toBeUndefined();
    await saveContextsFile(removed);
    expect((await loadContextsFile(filePath, HOME)).contexts.map((c) => c.name)).toEqual([
      "dev.local",
    ]);
  });

  it("keeps the mode 0600 when the old file was wider", async () => {
    const dir = await tempDir();
    const filePath = path.join(dir, "contexts.toml");
    await writeFile(filePath, '[contexts.a]\nserver = "h:1"\n', { mode: 0o644 });
    await saveContextsFile(await loadContextsFile(filePath, HOME));
    expect((await stat(filePath)).mode & 0o777).toBe(0o600);
    expect(await readFile(filePath, "utf8")).toContain('server = "h:1"');
  });
});
