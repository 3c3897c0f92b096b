import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach } from "vitest";
import {
  defaultConfigFilePath,
  type LoadedServerConfig,
  loadServerConfig,
  type ServerConfigInput,
} from "../../src/config/server-config.ts";
import { makeTempDir } from "./temp-dir.ts";

/** A fresh home and working directory per test, and the config loader pointed at them. */
export interface ConfigDirs {
  readonly home: string;
  readonly cwd: string;
  /** loadServerConfig with no flags and no environment unless given. */
  load(input?: Partial<ServerConfigInput>): LoadedServerConfig;
  /** Writes the default config file under `home` (JSON unless given a string); its path. */
  writeDefaultFile(value: unknown): Promise<string>;
}

/** Registers the per-test directories (beforeEach/afterEach) of a server-config test file. */
export function useConfigDirs(): ConfigDirs {
  let home = "";
  let cwd = "";
  let cleanup: () => Promise<void> = async () => {};
  beforeEach(async () => {
    const temp = await makeTempDir();
    cleanup = temp.cleanup;
    home = path.join(temp.dir, "home");
    cwd = path.join(temp.dir, "work");
    await mkdir(home);
    await mkdir(cwd);
  });
  afterEach(() => cleanup());
  return {
    get home() {
      return home;
    },
    get cwd() {
      return cwd;
    },
    load: (input = {}) => loadServerConfig({ flags: {}, env: {}, cwd, homeDir: home, ...input }),
    async writeDefaultFile(value) {
      const file = defaultConfigFilePath(home);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, typeof value === "string" ? value : JSON.stringify(value));
      return file;
    },
  };
}
