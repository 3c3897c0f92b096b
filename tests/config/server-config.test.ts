import { writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { describeConfig, loadServerConfig } from "../../src/config/server-config.ts";
import { useConfigDirs } from "./server-config-helpers.ts";

const dirs = useConfigDirs();
const { load, writeDefaultFile } = dirs;

describe("loadServerConfig defaults", () => {
  it("uses the defaults of SPEC section 3 when nothing is configured", () => {
    const loaded = load();
    expect(loaded.config).toEqual({
      enabled: true,
      host: "localhost",
      basePort: 8100,
      maxPort: 9099,
      maxAgents: 10,
      healthCheckIntervalMs: 30_000,
      restartOnFailure: true,
      maxRestarts: 3,
      agentsDirectory: path.join(dirs.cwd, "atoll_agents"),
      listen: "127.0.0.1:50051",
      stateDir: path.join(dirs.home, ".local/state/atoll-deploy"),
      authTokenFile: undefined,
      tlsCert: undefined,
      tlsKey: undefined,
      tlsClientCa: undefined,
      logLevel: "info",
      logMaxBytes: 10 * 1024 * 1024,
      logKeep: 3,
      httpListen: "127.0.0.1:50052",
      maxPackageBytes: 100 * 1024 * 1024,
      backend: "local",
      kubeconfig: undefined,
      namespace: undefined,
    });
    expect(loaded.warnings).toEqual([]);
    expect(loaded.configFile).toBeUndefined();
    expect(new Set(Object.values(loaded.sources))).toEqual(new Set(["default"]));
    expect(Object.isFrozen(loaded.config)).toBe(true);
  });

  it("puts the state directory under an absolute XDG_STATE_HOME and ignores a relative one", () => {
    expect(load({ env: { XDG_STATE_HOME: "/var/state" } }).config.stateDir).toBe(
      "/var/state/atoll-deploy",
    );
    expect(load({ env: { XDG_STATE_HOME: "relative" } }).config.stateDir).toBe(
      path.join(dirs.home, ".local/state/atoll-deploy"),
    );
  });

  it("derives max_port from base_port and cuts it at 65535", () => {
    expect(load({ flags: { base_port: "9000" } }).config.maxPort).toBe(9999);
    expect(load({ flags: { base_port: "65000" } }).config.maxPort).toBe(65535);
  });
});

describe("max_package_bytes", () => {
  it("reads bytes or a size with a unit from every source", async () => {
    expect(load({ flags: { max_package_bytes: "5MiB" } }).config.maxPackageBytes).toBe(
      5 * 1024 * 1024,
    );
    expect(load({ env: { ATOLL_DEPLOY_MAX_PACKAGE_BYTES: "1000" } }).config.maxPackageBytes).toBe(
      1000,
    );
    await writeDefaultFile({ deployment: { max_package_bytes: 2048 } });
    expect(load().config.maxPackageBytes).toBe(2048);
    await writeDefaultFile({ deployment: { max_package_bytes: "1.5GB" } });
    expect(load().config.maxPackageBytes).toBe(1_500_000_000);
  });

  it("refuses zero, fractions of a byte, negative numbers and unknown units, naming the source", async () => {
    expect(() => load({ flags: { max_package_bytes: "0" } })).toThrow(
      /--max-package-bytes: must be a positive number of bytes/,
    );
    expect(() => load({ flags: { max_package_bytes: "10 parsecs" } })).toThrow(
      /--max-package-bytes: .*Invalid memory format/,
    );
    const file = await writeDefaultFile({ deployment: { max_package_bytes: 1.5 } });
    expect(() => load()).toThrow(`${file}: deployment.max_package_bytes: must be a positive`);
    await writeDefaultFile({ deployment: { max_package_bytes: -1 } });
    expect(() => load()).toThrow(/got -1/);
    await writeDefaultFile({ deployment: { max_package_bytes: true } });
    expect(() => load()).toThrow(/got true/);
  });
});

describe("log_max_bytes and log_keep", () => {
  it("read log sizes as bytes or with a unit, and the count, from every source", async () => {
    await writeDefaultFile({ deployment: { log_max_bytes: "2MiB", log_keep: 5 } });
    expect(load().config).toMatchObject({ logMaxBytes: 2 * 1024 * 1024, logKeep: 5 });
    const fromEnv = load({
      env: { ATOLL_DEPLOY_LOG_MAX_BYTES: "1048576", ATOLL_DEPLOY_LOG_KEEP: "0" },
    });
    expect(fromEnv.config).toMatchObject({ logMaxBytes: 1_048_576, logKeep: 0 });
    const fromFlags = load({ flags: { log_max_bytes: "512KiB", log_keep: "1" } });
    expect(fromFlags.config).toMatchObject({ logMaxBytes: 512 * 1024, logKeep: 1 });
    expect(fromFlags.sources.log_max_bytes).toBe("flag");
  });

  it("refuse a size of zero or without a known unit and a count beyond 1000, naming the source", async () => {
    expect(() => load({ flags: { log_max_bytes: "0" } })).toThrow(
      /--log-max-bytes: must be a positive number of bytes/,
    );
    expect(() => load({ env: { ATOLL_DEPLOY_LOG_MAX_BYTES: "10 megs" } })).toThrow(
      /ATOLL_DEPLOY_LOG_MAX_BYTES: .*Invalid memory format/,
    );
    expect(() => load({ flags: { log_keep: "many" } })).toThrow(
      '--log-keep: must be an integer between 0 and 1000, got "many"',
    );
    const file = await writeDefaultFile({ deployment: { log_keep: 1001 } });
    expect(() => load()).toThrow(
      `${file}: deployment.log_keep: must be an integer between 0 and 1000, got 1001`,
    );
  });
});

describe("loadServerConfig sources", () => {
  it("reads the deployment object of the default config file and ignores its other keys", async () => {
    const file = await writeDefaultFile({
      base_url: "http://localhost",
      port: 11434,
      deployment: {
        enabled: false,
        host: "127.0.0.1",
        base_port: 8200,
        max_port: 8300,
        max_agents: 4,
        health_check_interval: 2.5,
        restart_on_failure: false,
        max_restarts: 0,
        agents_directory: "agents",
        listen: "unix:run/atoll.sock",
        state_dir: "~/state",
        auth_token_file: "/etc/atoll/token",
        tls_cert: "cert.pem",
        tls_key: "key.pem",
        tls_client_ca: "ca.pem",
        log_level: "DEBUG",
        log_max_bytes: 1_000_000,
        log_keep: 7,
        http_listen: "[::1]:8080",
        max_package_bytes: "10MiB",
        backend: "local",
        kubeconfig: null,
        namespace: null,
      },
    });
    const loaded = load();
    expect(loaded.configFile).toBe(file);
    expect(loaded.warnings).toEqual([]);
    expect(loaded.config).toEqual({
      enabled: false,
      host: "127.0.0.1",
      basePort: 8200,
      maxPort: 8300,
      maxAgents: 4,
      healthCheckIntervalMs: 2500,
      restartOnFailure: false,
      maxRestarts: 0,
      agentsDirectory: path.join(dirs.cwd, "agents"),
      listen: `unix:${path.join(dirs.cwd, "run/atoll.sock")}`,
      stateDir: path.join(dirs.home, "state"),
      authTokenFile: "/etc/atoll/token",
      tlsCert: path.join(dirs.cwd, "cert.pem"),
      tlsKey: path.join(dirs.cwd, "key.pem"),
      tlsClientCa: path.join(dirs.cwd, "ca.pem"),
      logLevel: "debug",
      logMaxBytes: 1_000_000,
      logKeep: 7,
      httpListen: "[::1]:8080",
      maxPackageBytes: 10 * 1024 * 1024,
      backend: "local",
      kubeconfig: undefined,
      namespace: undefined,
    });
    expect(new Set(Object.values(loaded.sources))).toEqual(new Set(["file"]));
  });

  it("applies defaults < file < environment < flags", async () => {
    await writeDefaultFile({ deployment: { base_port: 8200, max_agents: 5, max_restarts: 7 } });
    const loaded = load({
      env: { ATOLL_DEPLOY_MAX_AGENTS: "6", ATOLL_DEPLOY_MAX_RESTARTS: "8" },
      flags: { max_restarts: "9" },
    });
    expect(loaded.config).toMatchObject({
      basePort: 8200,
      maxAgents: 6,
      maxRestarts: 9,
      host: "localhost",
    });
    expect(loaded.sources).toMatchObject({
      host: "default",
      base_port: "file",
      max_agents: "env",
      max_restarts: "flag",
    });
  });

  it("reads the file given by --config instead of the default one", async () => {
    await writeDefaultFile({ deployment: { base_port: 8200 } });
    await writeFile(
      path.join(dirs.cwd, "custom.json"),
      JSON.stringify({ deployment: { base_port: 8300 } }),
    );
    const loaded = load({ configFile: "custom.json" });
    expect(loaded.config.basePort).toBe(8300);
    expect(loaded.configFile).toBe(path.join(dirs.cwd, "custom.json"));
  });

  it("accepts a config file without a deployment object", async () => {
    await writeDefaultFile({ base_url: "http://localhost:11434" });
    expect(load().config.basePort).toBe(8100);
  });

  it("takes null as none for keys whose default is none", async () => {
    await writeDefaultFile({ deployment: { auth_token_file: null } });
    expect(load().config.authTokenFile).toBeUndefined();
  });

  it("reads booleans from the environment in their common spellings and ignores empty values", () => {
    for (const [text, value] of [
      ["yes", true],
      ["OFF", false],
      ["1", true],
      ["false", false],
    ] as const) {
      expect(load({ env: { ATOLL_DEPLOY_ENABLED: text } }).config.enabled).toBe(value);
    }
    expect(load({ env: { ATOLL_DEPLOY_BASE_PORT: "" } }).config.basePort).toBe(8100);
  });

  it("sets restart_on_failure false from --no-restart", () => {
    const loaded = load({ flags: { restart_on_failure: false } });
    expect(loaded.config.restartOnFailure).toBe(false);
    expect(loaded.sources.restart_on_failure).toBe("flag");
  });

  it("expands ~ and resolves relative paths against the working directory", () => {
    const loaded = load({ flags: { agents_directory: "~/agents", state_dir: "../state" } });
    expect(loaded.config.agentsDirectory).toBe(path.join(dirs.home, "agents"));
    expect(loaded.config.stateDir).toBe(path.resolve(dirs.cwd, "../state"));
  });

  it.each([
    ["[::1]:50051", "[::1]:50051"],
    ["localhost:0", "localhost:0"],
    ["0.0.0.0:50051", "0.0.0.0:50051"],
    ["unix:///run/atoll.sock", "unix:/run/atoll.sock"],
    ["unix:/run/atoll.sock", "unix:/run/atoll.sock"],
  ])("accepts listen %j", (listen, expected) => {
    expect(load({ flags: { listen } }).config.listen).toBe(expected);
  });

  it.each([
    ["[::1]:50052", "[::1]:50052"],
    ["127.0.0.1:0", "127.0.0.1:0"],
    ["0.0.0.0:8080", "0.0.0.0:8080"],
    ["off", undefined],
    ["OFF", undefined],
  ])("accepts http_listen %j", (httpListen, expected) => {
    expect(load({ flags: { http_listen: httpListen } }).config.httpListen).toBe(expected);
  });

  it("reads http_listen from the file and the environment, and shows off as off", async () => {
    await writeDefaultFile({ deployment: { http_listen: "off" } });
    const fromFile = load();
    expect(fromFile.config.httpListen).toBeUndefined();
    expect(describeConfig(fromFile.config, fromFile.sources)).toContain("http_listen = off (file)");
    const fromEnv = load({ env: { ATOLL_DEPLOY_HTTP_LISTEN: "localhost:0" } });
    expect(fromEnv.config.httpListen).toBe("localhost:0");
    expect(fromEnv.sources.http_listen).toBe("env");
  });

  it.each(["::1", "127.0.0.1", "agents.internal", "my_host"])("accepts host %j", (host) => {
    expect(load({ flags: { host } }).config.host).toBe(host);
  });
});

describe("loadServerConfig warnings", () => {
  it("warns about unknown keys in the deployment object, with a suggestion", async () => {
    const file = await writeDefaultFile({ deployment: { base_prot: 1, colour: "blue" } });
    expect(load().warnings).toEqual([
      `${file}: unknown key deployment.base_prot ignored (did you mean deployment.base_port?)`,
      `${file}: unknown key deployment.colour ignored`,
    ]);
  });

  it("warns about unknown ATOLL_DEPLOY_ variables but not about the client's server address", () => {
    const loaded = load({
      env: { ATOLL_DEPLOY_BASEPORT: "1", ATOLL_DEPLOY_SERVER: "x:1", OTHER: "y" },
    });
    expect(loaded.warnings).toEqual([
      "unknown environment variable ATOLL_DEPLOY_BASEPORT ignored (did you mean ATOLL_DEPLOY_BASE_PORT?)",
    ]);
  });
});

describe("describeConfig", () => {
  it("prints one line per key with its source and no secret content", async () => {
    const loaded = load({
      flags: { auth_token_file: "/etc/atoll/token", tls_cert: "/c.pem", tls_key: "/k.pem" },
      env: { ATOLL_DEPLOY_HEALTH_CHECK_INTERVAL: "0.5" },
    });
    const text = describeConfig(loaded.config, loaded.sources);
    const lines = text.split("\n");
    expect(lines).toHaveLength(23);
    expect(lines).toContain("base_port = 8100 (default)");
    expect(lines).toContain("health_check_interval = 0.5 s (env)");
    expect(lines).toContain("auth_token_file = /etc/atoll/token (flag)");
    expect(lines).toContain("tls_key = /k.pem (flag)");
    expect(lines).toContain("tls_client_ca = none (default)");
    expect(describeConfig(loaded.config).split("\n")[0]).toBe("enabled = true");
  });
});

describe("the Kubernetes backend keys", () => {
  it("reads backend, kubeconfig and namespace from flags, refusing a bad namespace and backend", () => {
    const load = (flags: Record<string, string>) =>
      loadServerConfig({ flags, env: {}, cwd: "/w", homeDir: "/h", configFile: undefined });
    expect(
      load({ backend: "Kubernetes", kubeconfig: "kc.yaml", namespace: "agents" }).config,
    ).toMatchObject({
      backend: "kubernetes",
      kubeconfig: "/w/kc.yaml",
      namespace: "agents",
    });
    expect(() => load({ backend: "nomad" })).toThrow(
      '--backend: must be one of local, kubernetes, got "nomad"',
    );
    expect(() => load({ namespace: "Agents" })).toThrow(
      "--namespace: must be a Kubernetes namespace name",
    );
  });
});
