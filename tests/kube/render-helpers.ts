import { Deployment } from "kubernetes-models/apps/v1";
import { ConfigMap, Service } from "kubernetes-models/v1";
import type { AgentDefinition } from "../../src/config/agent-definition.ts";
import { parseAgentDefinition } from "../../src/config/parse-definition.ts";
import type { KubeObject } from "../../src/kube/render.ts";

/** A definition parsed from `text` as `/srv/atoll_agents/<dir>/agent.toml` (must be valid). */
export function definitionOf(text: string, dir = "demo"): AgentDefinition {
  const result = parseAgentDefinition(`/srv/atoll_agents/${dir}/agent.toml`, text, dir);
  if (!result.ok) throw new Error(result.message);
  return result.definition;
}

/**
 * Validates `object` against the Kubernetes OpenAPI schema of its kind (kubernetes-models);
 * throws the schema's complaint.
 */
export function validateAgainstSchema(object: KubeObject): void {
  const data = JSON.parse(JSON.stringify(object));
  switch (object.kind) {
    case "ConfigMap":
      new ConfigMap(data).validate();
      return;
    case "Deployment":
      new Deployment(data).validate();
      return;
    case "Service":
      new Service(data).validate();
      return;
    default:
      throw new Error(`no schema for ${object.kind}`);
  }
}
