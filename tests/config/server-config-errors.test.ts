import { mkdir } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/config/config-error.ts";
import { useConfigDirs } from "./server-config-helpers.ts";

const dirs = useConfigDirs();
const { load, writeDefaultFile } = dirs;

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("loadServerConfig errors", () => {
  it("refuses a --config file that does not exist", () => {
    const error = configError(() => load({ configFile: "missing.json" }));
    const file = path.join(dirs.cwd, "missing.json");
    expect(error.message).toBe(`config file ${file} does not exist`);
    expect(error.file).toBe(file);
  });

  it("refuses a config file that cannot be read", async () => {
    await mkdir(path.join(dirs.cwd, "dir.json"));
    const error = configError(() => load({ configFile: "dir.json" }));
    expect(error.message).toMatch(/^config file .*dir\.json cannot be read: .*\(EISDIR\)$/);
  });

  it("refuses malformed JSON, naming the file and line", async () => {
    const file = await writeDefaultFile('{\n  "deployment": {\n    "base_port": 8100,\n  }\n}');
    const error = configError(() => load());
    expect(error.message).toMatch(
      new RegExp(`^${file.replaceAll(".", "\\.")}: line 4, column 3: invalid JSON: `),
    );
    expect(error.file).toBe(file);
  });

  it("refuses a config file whose top level is not an object", async () => {
    const file = await writeDefaultFile("[]");
    expect(configError(() => load()).message).toBe(
      `${file}: top level must be a JSON object, got an array`,
    );
  });

  it("refuses a deployment value that is not an object", async () => {
    const file = await writeDefaultFile({ deployment: "on" });
    const error = configError(() => load());
    expect(error.message).toBe(`${file}: deployment: must be an object, got "on"`);
    expect(error.key).toBe("deployment");
  });

  it.each([
    ["enabled", "yes", 'must be true or false, got "yes"'],
    ["restart_on_failure", 1, "must be true or false, got 1"],
    ["base_port", "8100", 'must be an integer between 1 and 65535, got "8100"'],
    ["base_port", 8100.5, "got 8100.5"],
    ["base_port", null, "got null"],
    ["max_port", 70000, "got 70000"],
    ["max_agents", 0, "must be a positive integer, got 0"],
    ["max_restarts", -1, "must be a non-negative integer, got -1"],
    [
      "health_check_interval",
      "30",
      'must be a number of seconds between 0.001 and 2147483, got "30"',
    ],
    ["health_check_interval", 0, "got 0"],
    ["host", 5, "must be a string, got 5"],
    [
      "host",
      "bad host",
      'must be a host name or an IP address (IPv6 without brackets), got "bad host"',
    ],
    [
      "listen",
      "127.0.0.1",
      'must be host:port (port 0-65535, IPv6 as [addr]:port) or unix:/path, got "127.0.0.1"',
    ],
    ["listen", "::1:50051", "got"],
    ["listen", "localhost:99999", "got"],
    ["listen", "unix:", "unix: needs a socket path"],
    ["listen", `unix:/${"s".repeat(120)}`, "is longer than 103 bytes"],
    ["agents_directory", 1, "must be a string, got 1"],
    ["agents_directory", "", "must not be empty"],
    ["state_dir", ["a"], "must be a string, got an array"],
    ["log_level", "verbose", 'must be one of debug, info, warn, error, got "verbose"'],
    [
      "http_listen",
      "50052",
      'must be host:port (port 0-65535, IPv6 as [addr]:port) or off, got "50052"',
    ],
    ["http_listen", "unix:/run/atoll-http.sock", "or off, got"],
    ["http_listen", "localhost:70000", "or off, got"],
    ["http_listen", false, "must be a string, got false"],
  ])("refuses deployment.%s = %j in the file", async (key, value, problem) => {
    const file = await writeDefaultFile({ deployment: { [key]: value } });
    const error = configError(() => load());
    expect(error.message).toContain(`${file}: deployment.${key}: `);
    expect(error.message).toContain(problem);
    expect(error.file).toBe(file);
    expect(error.key).toBe(`deployment.${key}`);
  });

  it("refuses a wrong file value even when a flag overrides it", async () => {
    await writeDefaultFile({ deployment: { base_port: "high" } });
    expect(() => load({ flags: { base_port: "8100" } })).toThrow(ConfigError);
  });

  it.each([
    ["ATOLL_DEPLOY_BASE_PORT", "abc", 'must be an integer between 1 and 65535, got "abc"'],
    ["ATOLL_DEPLOY_BASE_PORT", "-5", 'must be an integer between 1 and 65535, got "-5"'],
    [
      "ATOLL_DEPLOY_ENABLED",
      "maybe",
      'must be true or false (or 1/0, yes/no, on/off), got "maybe"',
    ],
    [
      "ATOLL_DEPLOY_HEALTH_CHECK_INTERVAL",
      "0",
      'must be a number of seconds between 0.001 and 2147483, got "0"',
    ],
    [
      "ATOLL_DEPLOY_HEALTH_CHECK_INTERVAL",
      "5s",
      'must be a number of seconds between 0.001 and 2147483, got "5s"',
    ],
    ["ATOLL_DEPLOY_LOG_LEVEL", "trace", 'must be one of debug, info, warn, error, got "trace"'],
  ])("refuses %s=%j", (name, value, problem) => {
    const error = configError(() => load({ env: { [name]: value } }));
    expect(error.message).toBe(`environment variable ${name}: ${problem}`);
    expect(error.key).toBe(name);
    expect(error.file).toBeUndefined();
  });

  it.each([
    [{ base_port: "abc" }, '--base-port: must be an integer between 1 and 65535, got "abc"'],
    [{ max_agents: "0" }, '--max-agents: must be a positive integer, got "0"'],
    [
      { health_check_interval: "-1" },
      '--health-check-interval: must be a number of seconds between 0.001 and 2147483, got "-1"',
    ],
    [{ host: true }, "--host: needs a value"],
    [{ state_dir: "" }, "--state-dir: must not be empty"],
    [{ log_level: "loud" }, '--log-level: must be one of debug, info, warn, error, got "loud"'],
  ] as const)("refuses the flags %j", (flags, message) => {
    const error = configError(() => load({ flags }));
    expect(error.message).toBe(message);
  });

  it("refuses max_port below base_port, naming both sources", async () => {
    const file = await writeDefaultFile({ deployment: { max_port: 8000 } });
    const error = configError(() => load({ flags: { base_port: "8100" } }));
    expect(error.message).toBe(
      `${file}: deployment.max_port: 8000 is below base_port 8100 (from --base-port)`,
    );
    expect(configError(() => load({ flags: { max_port: "8000" } })).message).toBe(
      "--max-port: 8000 is below base_port 8100 (from default)",
    );
  });

  it.each([
    [
      { tls_key: "k.pem" },
      "--tls-key: is set but tls_cert is not: TLS needs both tls_cert and tls_key",
    ],
    [
      { tls_cert: "c.pem" },
      "--tls-cert: is set but tls_key is not: TLS needs both tls_cert and tls_key",
    ],
    [
      { tls_client_ca: "ca.pem" },
      "--tls-client-ca: is set but tls_cert is not: TLS needs both tls_cert and tls_key",
    ],
  ] as const)("refuses incomplete TLS settings %j", (flags, message) => {
    expect(configError(() => load({ flags })).message).toBe(message);
  });
});
