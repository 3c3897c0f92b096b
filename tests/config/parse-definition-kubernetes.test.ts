import { describe, expect, it } from "vitest";
import { parseCpuQuantity } from "../../src/config/kubernetes-syntax.ts";
import { invalid, json, TOML_FILE, toml, valid } from "./definition-helpers.ts";

describe("the [kubernetes] section", () => {
  it("defaults to nothing: no image, namespace or CPU, no GPUs, no node selector", () => {
    expect(valid(toml('[agent]\nname = "a"\n')).kubernetes).toEqual({
      image: undefined,
      namespace: undefined,
      cpu: undefined,
      gpus: 0,
      nodeSelector: {},
    });
  });

  it("reads every key, in TOML and in JSON", () => {
    const text = `[kubernetes]
image = "registry.example:5000/team/atoll-agent:0.1.0"
namespace = "agents"
cpu = "500m"
gpus = 1
[kubernetes.node_selector]
"nvidia.com/gpu.present" = "true"
zone = "a"
`;
    const expected = {
      image: "registry.example:5000/team/atoll-agent:0.1.0",
      namespace: "agents",
      cpu: "500m",
      gpus: 1,
      nodeSelector: { "nvidia.com/gpu.present": "true", zone: "a" },
    };
    expect(valid(toml(text)).kubernetes).toEqual(expected);
    expect(
      valid(
        json({
          agent: { name: "demo" },
          kubernetes: {
            ...expected,
            node_selector: expected.nodeSelector,
            nodeSelector: undefined,
          },
        }),
      ).kubernetes,
    ).toEqual(expected);
    expect(valid(toml("[kubernetes]\ncpu = 2")).kubernetes.cpu).toBe("2");
    expect(valid(toml("[kubernetes]\ncpu = 0.25")).kubernetes.cpu).toBe("0.25");
  });

  it.each([
    ["kubernetes", 'kubernetes = "x"', 'must be a table, got "x"'],
    [
      "kubernetes.image",
      '[kubernetes]\nimage = "has space:1"',
      "must be a container image reference",
    ],
    ["kubernetes.image", "[kubernetes]\nimage = 3", "must be a string, got 3"],
    [
      "kubernetes.namespace",
      '[kubernetes]\nnamespace = "Agents"',
      "must be a Kubernetes namespace name",
    ],
    ["kubernetes.cpu", '[kubernetes]\ncpu = "1.5m"', "must be a whole number of millicores"],
    ["kubernetes.cpu", "[kubernetes]\ncpu = 0.0001", "must be a whole number of millicores"],
    ["kubernetes.cpu", '[kubernetes]\ncpu = "0"', "must be above 0"],
    ["kubernetes.cpu", '[kubernetes]\ncpu = "two"', "must be a number of cores"],
    ["kubernetes.cpu", "[kubernetes]\ncpu = true", "must be a number of cores or a string"],
    ["kubernetes.gpus", "[kubernetes]\ngpus = -1", "must be a whole number of GPUs"],
    ["kubernetes.gpus", "[kubernetes]\ngpus = 1.5", "must be a whole number of GPUs"],
    ["kubernetes.node_selector", "[kubernetes]\nnode_selector = 1", "must be a table of strings"],
    ["kubernetes.node_selector.zone", "[kubernetes.node_selector]\nzone = 1", "must be a string"],
    [
      "kubernetes.node_selector.bad key",
      '[kubernetes.node_selector]\n"bad key" = "x"',
      "the name of a label key",
    ],
    [
      "kubernetes.node_selector.Example.COM/x",
      '[kubernetes.node_selector]\n"Example.COM/x" = "x"',
      "the prefix of a label key",
    ],
    ["kubernetes.node_selector.zone", '[kubernetes.node_selector]\nzone = "-a"', "a label value"],
  ])("refuses %s in %j", (key, text, problem) => {
    const { message } = invalid(toml(text));
    expect(message).toContain(`${TOML_FILE}: ${key}: ${problem}`);
  });

  it("warns about unknown keys, suggesting the closest", () => {
    expect(valid(toml('[kubernetes]\nimag = "x:1"')).warnings).toEqual([
      "unknown key kubernetes.imag (did you mean kubernetes.image?)",
    ]);
  });

  it("reads CPU quantities as Kubernetes does, refusing what it would round", () => {
    expect(parseCpuQuantity("100m")).toEqual({ ok: true, text: "100m" });
    expect(parseCpuQuantity(".5")).toEqual({ ok: true, text: ".5" });
    expect(parseCpuQuantity("0.001")).toEqual({ ok: true, text: "0.001" });
    expect(parseCpuQuantity("1e3").ok).toBe(false);
    expect(parseCpuQuantity("0m").ok).toBe(false);
  });
});
