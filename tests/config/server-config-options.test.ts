import { describe, expect, it } from "vitest";
import { isConfigError } from "../../src/config/config-error.ts";
import { configFields } from "../../src/config/server-config.ts";
import type { ServerConfigKey } from "../../src/config/server-config-keys.ts";
import { useConfigDirs } from "./server-config-helpers.ts";

const dirs = useConfigDirs();
const { load, writeDefaultFile } = dirs;

const label = (key: ServerConfigKey) => `option ${key}`;
const withOptions = (values: Partial<Record<ServerConfigKey, unknown>>) =>
  load({ options: { values, label } });

function problem(values: Partial<Record<ServerConfigKey, unknown>>): string {
  try {
    withOptions(values);
  } catch (error) {
    if (isConfigError(error)) return error.message;
    throw error;
  }
  throw new Error("no ConfigError");
}

describe("loadServerConfig options (values set in code)", () => {
  it("takes typed values, resolves paths and reports the source as option", () => {
    const loaded = withOptions({
      base_port: 9000,
      restart_on_failure: false,
      health_check_interval: 0.5,
      agents_directory: "agents",
      log_level: "WARN",
    });
    expect(loaded.config).toMatchObject({
      basePort: 9000,
      maxPort: 9999,
      restartOnFailure: false,
      healthCheckIntervalMs: 500,
      agentsDirectory: `${dirs.cwd}/agents`,
      logLevel: "warn",
    });
    expect(loaded.sources.base_port).toBe("option");
    expect(loaded.sources.max_port).toBe("default");
  });

  it("is as strict as the config file: no text for numbers or booleans", () => {
    expect(problem({ base_port: "8100" })).toBe(
      'option base_port: must be an integer between 1 and 65535, got "8100"',
    );
    expect(problem({ restart_on_failure: "false" })).toBe(
      'option restart_on_failure: must be true or false, got "false"',
    );
    expect(problem({ health_check_interval: 0 })).toMatch(/^option health_check_interval: /);
    expect(problem({ listen: "nowhere" })).toMatch(/^option listen: must be host:port/);
    expect(problem({ max_port: 10, base_port: 20 })).toMatch(/^option max_port: 10 is below/);
  });

  it("takes null as unset for keys without a default, like the file", () => {
    expect(withOptions({ auth_token_file: null }).config.authTokenFile).toBeUndefined();
  });

  it("reads no config file when options are given", async () => {
    await writeDefaultFile({ deployment: { base_port: 8200 } });
    expect(load().config.basePort).toBe(8200);
    expect(withOptions({}).config.basePort).toBe(8100);
    expect(withOptions({}).configFile).toBeUndefined();
  });
});

describe("configFields", () => {
  it("gives one JSON value per key in table order, seconds for durations, null when unset", () => {
    const fields = configFields(
      load({ env: { ATOLL_DEPLOY_HEALTH_CHECK_INTERVAL: "0.5" } }).config,
    );
    expect(Object.keys(fields)[0]).toBe("enabled");
    expect(fields).toMatchObject({
      base_port: 8100,
      health_check_interval: 0.5,
      listen: "127.0.0.1:50051",
      tls_cert: null,
    });
  });
});
