import { describe, expect, it } from "vitest";
import { SERVER_CONFIG_KEYS } from "../../src/config/server-config-keys.ts";
import {
  checkValue,
  DEFINITION_VALUES,
  duration,
  SERVER_VALUES,
  serverValueSpec,
} from "../../src/config/value-schema.ts";

const file = { fromText: false, path: "deployment.x" };
const text = { fromText: true, path: "--x" };

describe("configuration value schema", () => {
  it("accepts 0 only where the key says what it means", () => {
    const restartDelay = DEFINITION_VALUES["deployment.restart_delay"];
    expect(checkValue(restartDelay, 0, file)).toEqual({ ok: true, value: 0, warning: undefined });
    expect(checkValue(DEFINITION_VALUES["deployment.health_timeout"], 0, file)).toEqual({
      ok: false,
      problem: "must be a number of seconds between 0.001 and 2147483, got 0",
    });
    expect(checkValue(restartDelay, 0.0004, file)).toMatchObject({
      ok: false,
      problem:
        "must be 0 (restart at once) or a number of seconds between 0.001 and 2147483, got 0.0004",
    });
  });

  it("reads decimal text from the environment and flags, and only numbers from files", () => {
    const spec = SERVER_VALUES.health_check_interval;
    expect(checkValue(spec, "2.5", text)).toMatchObject({ ok: true, value: 2.5 });
    expect(checkValue(spec, "2.5", file)).toMatchObject({ ok: false });
    expect(checkValue(SERVER_VALUES.base_port, "8100", text)).toMatchObject({ value: 8100 });
    expect(checkValue(SERVER_VALUES.base_port, "81.5", text)).toMatchObject({ ok: false });
  });

  it("reads a size as bytes or with a unit, and refuses 0 and fractions of a byte", () => {
    const spec = SERVER_VALUES.max_package_bytes;
    expect(checkValue(spec, "5MiB", text)).toMatchObject({ ok: true, value: 5 * 1024 * 1024 });
    expect(checkValue(spec, 2048, file)).toMatchObject({ ok: true, value: 2048 });
    expect(checkValue(spec, 0, file)).toMatchObject({ ok: false });
    expect(checkValue(spec, 1.5, file)).toMatchObject({ ok: false });
  });

  it("keeps a value beyond a cap and says what the cap does", () => {
    const spec = duration({ default: 1, cap: { above: 30, of: "x", effect: "y" } });
    expect(checkValue(spec, 31, file)).toEqual({
      ok: true,
      value: 31,
      warning: "deployment.x: 31 s is above the 30 s cap of x; y",
    });
    expect(checkValue(spec, 30, file)).toMatchObject({ warning: undefined });
  });

  it("has a row for every numeric server key, agreeing with the default shown in help", () => {
    for (const info of SERVER_CONFIG_KEYS) {
      if (info.type !== "integer" && info.type !== "number" && info.type !== "size") continue;
      const spec = serverValueSpec(info.key);
      expect(Object.hasOwn(SERVER_VALUES, info.key), info.key).toBe(true);
      expect(spec.kind, info.key).toBe(info.type === "number" ? "duration" : info.type);
      if (spec.default !== undefined && info.type !== "size") {
        expect(info.defaultText, info.key).toBe(String(spec.default));
      }
    }
  });
});
