import { describe, expect, it } from "vitest";
import { describeConfig, loadServerConfig } from "../../src/config/server-config.ts";
import {
  isServerConfigKey,
  SERVER_CONFIG_KEYS,
  serverConfigKeyInfo,
} from "../../src/config/server-config-keys.ts";

describe("SERVER_CONFIG_KEYS", () => {
  it("lists the flags of SPEC section 3", () => {
    expect(SERVER_CONFIG_KEYS.map((info) => [info.key, info.flag])).toEqual([
      ["enabled", undefined],
      ["host", "--host"],
      ["base_port", "--base-port"],
      ["max_port", "--max-port"],
      ["max_agents", "--max-agents"],
      ["health_check_interval", "--health-check-interval"],
      ["restart_on_failure", "--no-restart"],
      ["max_restarts", "--max-restarts"],
      ["agents_directory", "--agents-dir"],
      ["listen", "--listen"],
      ["state_dir", "--state-dir"],
      ["auth_token_file", "--auth-token-file"],
      ["tls_cert", "--tls-cert"],
      ["tls_key", "--tls-key"],
      ["tls_client_ca", "--tls-client-ca"],
      ["log_level", "--log-level"],
      ["log_max_bytes", "--log-max-bytes"],
      ["log_keep", "--log-keep"],
      ["http_listen", "--http-listen"],
      ["max_package_bytes", "--max-package-bytes"],
      ["backend", "--backend"],
      ["kubeconfig", "--kubeconfig"],
      ["namespace", "--namespace"],
    ]);
  });

  it("names each environment variable after its upper-cased key", () => {
    for (const info of SERVER_CONFIG_KEYS) {
      expect(info.env).toBe(`ATOLL_DEPLOY_${info.key.toUpperCase()}`);
    }
  });

  it("marks --no-restart as a switch that sets false, and only it", () => {
    expect(SERVER_CONFIG_KEYS.filter((info) => info.switchValue !== undefined)).toEqual([
      expect.objectContaining({ key: "restart_on_failure", switchValue: false }),
    ]);
  });

  it("covers every line of describeConfig", () => {
    const { config } = loadServerConfig({ flags: {}, env: {}, cwd: "/w", homeDir: "/h" });
    const described = describeConfig(config)
      .split("\n")
      .map((line) => line.split(" = ")[0]);
    expect(described).toEqual(SERVER_CONFIG_KEYS.map((info) => info.key));
  });

  it("finds rows by key and recognises keys", () => {
    expect(serverConfigKeyInfo("log_level").choices).toEqual(["debug", "info", "warn", "error"]);
    expect(isServerConfigKey("base_port")).toBe(true);
    expect(isServerConfigKey("toString")).toBe(false);
  });
});
