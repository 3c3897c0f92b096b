import { mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { list } from "tar";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PackError, packDirectory } from "../../src/packages/pack-directory.ts";
import { sha256 } from "./archives.ts";

let temp: string;
beforeEach(async () => {
  temp = await mkdtemp(path.join(os.tmpdir(), "atoll-packdir-"));
});
afterEach(() => rm(temp, { recursive: true, force: true }));

async function agentDir(): Promise<string> {
  const dir = path.join(temp, "greeter");
  await mkdir(path.join(dir, "lib"), { recursive: true });
  await mkdir(path.join(dir, "node_modules", "x"), { recursive: true });
  await mkdir(path.join(dir, ".git"), { recursive: true });
  await writeFile(path.join(dir, "agent.toml"), '[agent]\nname = "greeter"\n');
  await writeFile(path.join(dir, "lib", "main.py"), "print('hi')\n");
  await writeFile(path.join(dir, "lib", "cache.tmp"), "scratch\n");
  await writeFile(path.join(dir, "node_modules", "x", "index.js"), "\n");
  await writeFile(path.join(dir, ".git", "HEAD"), "ref\n");
  await writeFile(path.join(dir, ".atollignore"), "*.tmp\n");
  return dir;
}

async function names(file: string): Promise<string[]> {
  const out: string[] = [];
  await list({ file, onReadEntry: (entry) => out.push(entry.path) });
  return out;
}

describe("packDirectory", () => {
  it("packs under a folder named after the directory, honouring .atollignore and the defaults", async () => {
    const dir = await agentDir();
    const out = path.join(temp, "a.tar.gz");
    await packDirectory(dir, out);
    expect(await names(out)).toEqual([
      "greeter/",
      "greeter/.atollignore",
      "greeter/agent.toml",
      "greeter/lib/",
      "greeter/lib/main.py",
    ]);
  });

  it("gives the same bytes for the same files, whatever their times", async () => {
    const dir = await agentDir();
    const first = path.join(temp, "1.tar.gz");
    const second = path.join(temp, "2.tar.gz");
    await packDirectory(dir, first);
    await utimes(path.join(dir, "agent.toml"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    await packDirectory(dir, second);
    expect(sha256(await readFile(first))).toBe(sha256(await readFile(second)));
  });

  it("refuses a symbolic link and a directory without a definition", async () => {
    const dir = await agentDir();
    await symlink("/etc/passwd", path.join(dir, "lib", "passwd"));
    await expect(packDirectory(dir, path.join(temp, "x.tar.gz"))).rejects.toThrow(
      /lib\/passwd is a symbolic link/,
    );
    const empty = path.join(temp, "empty");
    await mkdir(empty);
    await expect(packDirectory(empty, path.join(temp, "y.tar.gz"))).rejects.toBeInstanceOf(
      PackError,
    );
  });
});
