// biome-ignore-all lint/suspicious/noExplicitAny: the tests walk plain objects they just built
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { toYamlDocuments } from "../../src/kube/manifest-yaml.ts";
import {
  type AgentObjects,
  type KubeObject,
  objectsOf,
  renderAgent,
  renderAgents,
} from "../../src/kube/render.ts";
import { definitionOf, validateAgainstSchema } from "./render-helpers.ts";

const VERSION = "0.1.0";

function rendered(text: string, dir = "demo", options = {}): AgentObjects {
  const result = renderAgent(
    { definition: definitionOf(text, dir), text },
    { version: VERSION, ...options },
  );
  if (!result.ok) throw new Error(result.problems.join("\n"));
  return result.objects;
}

function refusal(text: string, dir = "demo"): string {
  const result = renderAgent({ definition: definitionOf(text, dir), text }, { version: VERSION });
  if (result.ok) throw new Error("expected a refusal");
  return result.problems.join("\n");
}

/** The container of the Deployment. */
function containerOf(agent: AgentObjects): Record<string, any> {
  return (agent.deployment as any).spec.template.spec.containers[0];
}

const GOLDEN_DIR = fileURLToPath(new URL("./golden/", import.meta.url));

/** Compares with the golden file; `UPDATE_GOLDEN=1` rewrites it. */
async function expectGolden(name: string, text: string): Promise<void> {
  const file = `${GOLDEN_DIR}${name}.yaml`;
  if (process.env.UPDATE_GOLDEN === "1") await writeFile(file, text);
  expect(text).toBe(await readFile(file, "utf8"));
}

const ORDINARY = `[agent]
name = "greeter"
version = "1.0.0"

[deployment]
command = ["atoll-agent", "--server", "--port", "{port}", "--host", "{host}", "--agent", "{config}"]
health_check_interval = 15
stop_timeout = 20

[deployment.env]
LOG_LEVEL = "debug"

[llm]
model = "echo"
`;

const GPU = `[agent]
name = "Vision_Agent.v2"

[deployment]
port = 9000
health_path = "/healthz"
health_timeout = 5
failure_threshold = 5
start_timeout = 120

[resources]
memory_limit = "16GiB"

[kubernetes]
image = "registry.example/atoll-agent:0.1.0-cuda"
namespace = "gpu-agents"
cpu = "4"
gpus = 1

[kubernetes.node_selector]
"nvidia.com/gpu.product" = "NVIDIA-L4"
`;

const NO_PROBE = `[agent]
name = "batch"
[deployment]
health_path = ""
command = ["/usr/local/bin/batch-agent", "--name", "{name}", "--dir", "{dir}"]
[resources]
memory_limit = "512MB"
`;

describe("render: ordinary definitions", () => {
  it.each([
    ["ordinary", ORDINARY, "greeter", {}],
    ["gpu", GPU, "vision", { namespace: "ignored-by-definition", image: "ignored:1" }],
    ["no-probe", NO_PROBE, "batch", { namespace: "batch", image: "example/batch:2" }],
  ])(
    "matches the golden file %s, and every object passes the OpenAPI schema",
    async (golden, text, dir, options) => {
      const agent = rendered(text, dir, options);
      for (const object of objectsOf(agent)) validateAgainstSchema(object);
      await expectGolden(golden, toYamlDocuments(objectsOf(agent)));
    },
  );

  it("maps every key of SPEC §11 into the objects", () => {
    const agent = rendered(ORDINARY, "greeter");
    const c = containerOf(agent);
    expect(agent.objectName).toBe("atoll-greeter");
    expect(c.image).toBe(`atoll-agent:${VERSION}`);
    expect(c.command).toEqual([
      "atoll-agent",
      "--server",
      "--port",
      "8100",
      "--host",
      "0.0.0.0",
      "--agent",
      "/etc/atoll/agent/agent.toml",
    ]);
    expect(c.env).toEqual([
      { name: "LOG_LEVEL", value: "debug" },
      { name: "PORT", value: "8100" },
      { name: "ATOLL_AGENT_NAME", value: "greeter" },
      { name: "ATOLL_AGENT_PORT", value: "8100" },
      { name: "ATOLL_AGENT_HOST", value: "0.0.0.0" },
      { name: "ATOLL_AGENT_CONFIG", value: "/etc/atoll/agent/agent.toml" },
    ]);
    expect(c.startupProbe).toMatchObject({ periodSeconds: 1, failureThreshold: 30 });
    expect(c.livenessProbe).toEqual({
      httpGet: { path: "/status", port: "http", scheme: "HTTP" },
      periodSeconds: 15,
      timeoutSeconds: 10,
      failureThreshold: 3,
    });
    expect(c.readinessProbe).toEqual(c.livenessProbe);
    const deployment = agent.deployment as any;
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy).toEqual({ type: "Recreate" });
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds).toBe(20);
    expect(deployment.metadata.labels).toEqual({
      "app.kubernetes.io/name": "greeter",
      "app.kubernetes.io/managed-by": "atoll-deploy",
    });
    expect(deployment.spec.selector.matchLabels).toEqual(deployment.spec.template.metadata.labels);
    expect(agent.configMap.data).toEqual({ "agent.toml": ORDINARY });
    expect(agent.namespace).toBeUndefined();
    expect("namespace" in agent.configMap.metadata).toBe(false);
  });

  it("changes the pod template's definition hash, and only it, when the definition changes", () => {
    const before = rendered(ORDINARY, "greeter");
    const after = rendered(`${ORDINARY}\n# tuned\n`, "greeter");
    const sha = (a: AgentObjects) =>
      (a.deployment as any).spec.template.metadata.annotations["atoll.dev/definition-sha256"];
    expect(sha(before)).toMatch(/^[0-9a-f]{64}$/);
    expect(sha(after)).not.toBe(sha(before));
    expect(sha(rendered(ORDINARY, "greeter"))).toBe(sha(before));
  });

  it("takes resources, GPUs, node selector and namespace from the definition over the flags", () => {
    const agent = rendered(GPU, "vision", { namespace: "flag-ns", image: "flag:1" });
    const c = containerOf(agent);
    expect(agent.objectName).toBe("atoll-vision-agent-v2");
    expect(agent.namespace).toBe("gpu-agents");
    expect(c.image).toBe("registry.example/atoll-agent:0.1.0-cuda");
    expect(c.resources).toEqual({
      limits: { memory: "16Gi", cpu: "4", "nvidia.com/gpu": "1" },
      requests: { memory: "16Gi", cpu: "4" },
    });
    expect(c.ports).toEqual([{ name: "http", containerPort: 9000, protocol: "TCP" }]);
    expect(c.startupProbe.failureThreshold).toBe(120);
    expect((agent.deployment as any).spec.template.spec.nodeSelector).toEqual({
      "nvidia.com/gpu.product": "NVIDIA-L4",
    });
    expect((agent.service as any).spec.ports).toEqual([
      { name: "http", port: 9000, targetPort: "http", protocol: "TCP" },
    ]);
    expect(agent.service.metadata.labels["app.kubernetes.io/name"]).toBe("Vision_Agent.v2");
  });

  it("tells the atoll-agent runtime to bind the pod's address unless the command says --host", () => {
    const c = containerOf(rendered('[agent]\nname = "plain"\n', "plain"));
    expect(c.command).toEqual([
      "atoll-agent",
      "--server",
      "--port",
      "8100",
      "--agent",
      "/etc/atoll/agent/agent.toml",
      "--host",
      "0.0.0.0",
    ]);
    expect(
      containerOf(rendered(ORDINARY, "greeter")).command.filter((a: string) => a === "--host"),
    ).toHaveLength(1);
  });

  it("emits no probes when health_path is empty, and the flags' namespace and image", () => {
    const agent = rendered(NO_PROBE, "batch", { namespace: "batch", image: "example/batch:2" });
    const c = containerOf(agent);
    expect(c.startupProbe).toBeUndefined();
    expect(c.livenessProbe).toBeUndefined();
    expect(c.readinessProbe).toBeUndefined();
    expect(c.image).toBe("example/batch:2");
    expect(c.command).toEqual([
      "/usr/local/bin/batch-agent",
      "--name",
      "batch",
      "--dir",
      "/etc/atoll/agent",
    ]);
    expect(c.resources).toEqual({ limits: { memory: "512M" }, requests: { memory: "512M" } });
    expect(agent.namespace).toBe("batch");
  });
});

describe("render: what the schemas cannot see", () => {
  const all = [rendered(ORDINARY, "greeter"), rendered(GPU, "vision"), rendered(NO_PROBE, "batch")];

  it("names in every probe a port the container has, and the Service targets it", () => {
    for (const agent of all) {
      const c = containerOf(agent);
      const ports = new Set(c.ports.map((p: { name: string }) => p.name));
      for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) {
        if (probe !== undefined) expect(ports.has(probe.httpGet.port)).toBe(true);
      }
      for (const port of (agent.service as any).spec.ports)
        expect(ports.has(port.targetPort)).toBe(true);
    }
  });

  it("selects the pods with the Service and the Deployment by the pod's own labels", () => {
    for (const agent of all) {
      const d = agent.deployment as any;
      expect(d.spec.selector.matchLabels).toEqual(d.spec.template.metadata.labels);
      expect((agent.service as any).spec.selector).toEqual(d.spec.template.metadata.labels);
      expect(d.spec.template.spec.volumes[0].configMap.name).toBe(agent.configMap.metadata.name);
    }
  });

  it("gives every object the same DNS-1123 label as its name", () => {
    for (const agent of all) {
      for (const object of objectsOf(agent)) {
        expect(object.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
        expect(object.metadata.name.length).toBeLessThanOrEqual(63);
        expect(object.metadata.name).toBe(agent.objectName);
      }
    }
  });

  it("keeps hostile values exactly as written, under YAML 1.1 and 1.2 readers alike", () => {
    const text = `[agent]
name = "hostile"
[deployment]
command = ["atoll-agent", "$(HOME)", "yes", "0o17", "017", "on", "~", "<<", "a: b", "#x", "multi\\nline", " lead", "é\\u0007"]
[deployment.env]
DOLLAR = "$(PATH) $$ $"
BOOL = "no"
NUM = "8100"
EMPTY = ""
PORT = "1"
`;
    const agent = rendered(text, "hostile");
    const yaml = toYamlDocuments(objectsOf(agent));
    for (const version of ["1.1", "1.2"] as const) {
      const docs = parseAllDocuments(yaml, { version }).map((d) => d.toJS() as KubeObject);
      const c = (docs[1] as any).spec.template.spec.containers[0];
      const unescaped = (v: string) => v.replaceAll("$$", "$");
      expect(c.command.map(unescaped)).toEqual([
        "atoll-agent",
        "$(HOME)",
        "yes",
        "0o17",
        "017",
        "on",
        "~",
        "<<",
        "a: b",
        "#x",
        "multi\nline",
        " lead",
        "é\u0007",
        "--host",
        "0.0.0.0",
      ]);
      const env = Object.fromEntries(
        c.env.map((e: { name: string; value: string }) => [e.name, unescaped(e.value)]),
      );
      expect(env).toMatchObject({
        DOLLAR: "$(PATH) $$ $",
        BOOL: "no",
        NUM: "8100",
        EMPTY: "",
        PORT: "8100",
      });
      expect((docs[0] as any).data["agent.toml"]).toBe(text);
    }
    // Kubelet would expand $(HOME); doubled, it reduces back to the literal text.
    expect(containerOf(agent).command[1]).toBe("$$(HOME)");
  });

  it("quotes no value the readers would take for a number or boolean", () => {
    const doc = parse(toYamlDocuments([rendered(ORDINARY, "greeter").deployment]), {
      version: "1.1",
    });
    const env = doc.spec.template.spec.containers[0].env;
    for (const entry of env) expect(typeof entry.value).toBe("string");
  });
});

describe("render: refusals", () => {
  it.each([
    [
      "[deployment]\nauto_restart = false",
      "deployment.auto_restart: false cannot be run faithfully",
    ],
    ["[deployment]\nmax_restarts = 0", "deployment.max_restarts: 0 (never restart)"],
    [
      "[deployment]\nhealth_check_interval = 0.5",
      "deployment.health_check_interval: 0.5 s cannot be a probe's periodSeconds",
    ],
    ["[deployment]\nhealth_timeout = 2.5", "deployment.health_timeout: 2.5 s"],
    ["[deployment]\nstart_timeout = 0.2", "deployment.start_timeout: 0.2 s"],
    [
      "[deployment]\nstop_timeout = 1.5",
      "deployment.stop_timeout: 1.5 s cannot be terminationGracePeriodSeconds",
    ],
    [
      '[deployment]\ncommand = ["./run.sh"]',
      'deployment.command[0]: "./run.sh" is a program inside the agent\'s directory',
    ],
    ['[deployment]\ncommand = ["{dir}/run.sh"]', "deployment.command[0]"],
    [
      '[deployment.env]\n"1BAD" = "x"',
      'deployment.env.1BAD: "1BAD" is not an environment variable name',
    ],
    ['[deployment.env]\n"A B" = "x"', "deployment.env.A B"],
  ])("refuses %j naming the file and key", (text, problem) => {
    expect(refusal(text)).toContain(`/srv/atoll_agents/demo/agent.toml: ${problem}`);
  });

  it("accepts fractional durations when there is no probe to carry them", () => {
    expect(() =>
      rendered('[deployment]\nhealth_path = ""\nhealth_check_interval = 0.5'),
    ).not.toThrow();
  });

  it("refuses names that are no DNS-1123 label after mapping, never cutting them", () => {
    const long = "a".repeat(58);
    expect(refusal(`[agent]\nname = "${long}"`)).toContain("longer than the 63 characters");
    expect(() => rendered(`[agent]\nname = "${"a".repeat(57)}"`)).not.toThrow();
    expect(refusal('[agent]\nname = "trailing_"')).toContain(
      'maps to the object name "atoll-trailing-"',
    );
    expect(refusal('[agent]\nname = "dot."')).toContain("which is not a DNS-1123 label");
  });

  it("refuses every agent of a collision, naming the others", () => {
    const a = '[agent]\nname = "My.Agent"\n';
    const b = '[agent]\nname = "my_agent"\n';
    const c = '[agent]\nname = "other"\n';
    const result = renderAgents(
      [
        { definition: definitionOf(a, "a"), text: a },
        { definition: definitionOf(b, "b"), text: b },
        { definition: definitionOf(c, "c"), text: c },
      ],
      { version: VERSION },
    );
    expect(result.ok).toBe(false);
    const problems = result.ok ? [] : result.problems;
    expect(problems).toEqual([
      '/srv/atoll_agents/a/agent.toml: agent.name: "My.Agent" maps to the object name atoll-my-agent, as "my_agent" does: rename one of them',
      '/srv/atoll_agents/b/agent.toml: agent.name: "my_agent" maps to the object name atoll-my-agent, as "My.Agent" does: rename one of them',
    ]);
  });

  it("allows the same object name in two namespaces", () => {
    const a = '[agent]\nname = "x.y"\n[kubernetes]\nnamespace = "one"\n';
    const b = '[agent]\nname = "x_y"\n[kubernetes]\nnamespace = "two"\n';
    const result = renderAgents(
      [
        { definition: definitionOf(a, "a"), text: a },
        { definition: definitionOf(b, "b"), text: b },
      ],
      { version: VERSION },
    );
    expect(result.ok).toBe(true);
  });
});

describe("the schema check itself", () => {
  it("refuses an object the API would refuse", () => {
    const agent = rendered(ORDINARY, "greeter");
    const broken = JSON.parse(JSON.stringify(agent.deployment));
    broken.spec.template.spec.containers[0].ports[0].containerPort = "http";
    expect(() => validateAgainstSchema(broken)).toThrow();
  });
});
