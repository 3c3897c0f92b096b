/**
 * A Deploy or Restart on the cluster, in its pure parts (docs/kubernetes.md): which objects it
 * applies (the definition checked and rendered), which Deployment patch goes with them, and,
 * from the facts the caches hold after the apply, whether the agent's new pod is ready, failed,
 * or still on its way. The Kubernetes backend performs the apply and waits on these answers.
 */
import type { AgentDefinition, DefinitionEntry } from "../config/agent-definition.ts";
import { DeployError } from "../core/errors.ts";
import {
  type ClusterFacts,
  type ClusterPod,
  RESTARTED_AT_ANNOTATION,
  STOP_MESSAGE_ANNOTATION,
  STOP_REASON_ANNOTATION,
} from "./cluster-state.ts";
import { DEFINITION_SHA_ANNOTATION } from "./object-names.ts";
import { type AgentObjects, type RenderOptions, renderAgent } from "./render.ts";

export interface StartPlan {
  readonly definition: AgentDefinition;
  readonly objects: AgentObjects;
  /** The pod template's definition checksum: pods that carry it run this definition. */
  readonly definitionSha: string;
}

export interface StartPlanOptions {
  /** The server's namespace; a definition naming another is refused. */
  readonly namespace: string;
  readonly version: string;
  readonly defaults: NonNullable<RenderOptions["defaults"]>;
  /** Reads the definition file (its text is shipped in the ConfigMap). */
  readonly readText: (file: string) => Promise<string>;
}

/**
 * The objects a start applies for `name`.
 * @throws DeployError AGENT_CONFIG_INVALID when the definition is gone, invalid, names another
 *   namespace, cannot be read, or cannot be rendered faithfully.
 */
export async function planStart(
  name: string,
  entry: DefinitionEntry | undefined,
  options: StartPlanOptions,
): Promise<StartPlan> {
  if (entry === undefined) {
    throw new DeployError("AGENT_CONFIG_INVALID", `agent ${name} has no definition any more`, {
      agent: name,
    });
  }
  if (entry.kind === "invalid") {
    throw new DeployError("AGENT_CONFIG_INVALID", entry.message, { agent: name });
  }
  const definition = entry.definition;
  const { namespace } = options;
  if (
    definition.kubernetes.namespace !== undefined &&
    definition.kubernetes.namespace !== namespace
  ) {
    throw new DeployError(
      "AGENT_CONFIG_INVALID",
      `${definition.configPath}: kubernetes.namespace: ${definition.kubernetes.namespace} is not the server's namespace ${namespace}`,
      { agent: name },
    );
  }
  let text: string;
  try {
    text = await options.readText(definition.configPath);
  } catch (error) {
    throw new DeployError(
      "AGENT_CONFIG_INVALID",
      `${definition.configPath}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      { agent: name },
    );
  }
  const rendered = renderAgent(
    { definition, text },
    { namespace, version: options.version, defaults: options.defaults },
  );
  if (!rendered.ok) {
    throw new DeployError("AGENT_CONFIG_INVALID", rendered.problems.join("; "), { agent: name });
  }
  const objects = rendered.objects;
  // biome-ignore lint/suspicious/noExplicitAny: reading one annotation of a plain object
  const definitionSha = (objects.deployment as any).spec.template.metadata.annotations[
    DEFINITION_SHA_ANNOTATION
  ] as string;
  return { definition, objects, definitionSha };
}

/**
 * The Deployment patch that goes with a start: a stop recorded in the live Deployment's
 * annotations is cleared, and a restart sets the pod template's `restartedAt`. Undefined when
 * there is nothing to patch.
 */
export function startPatch(
  liveAnnotations: Readonly<Record<string, string>>,
  restartedAt: string | undefined,
): Record<string, unknown> | undefined {
  const patch: Record<string, unknown> = {};
  if (
    liveAnnotations[STOP_REASON_ANNOTATION] !== undefined ||
    liveAnnotations[STOP_MESSAGE_ANNOTATION] !== undefined
  ) {
    patch.metadata = {
      annotations: { [STOP_REASON_ANNOTATION]: null, [STOP_MESSAGE_ANNOTATION]: null },
    };
  }
  if (restartedAt !== undefined) {
    patch.spec = {
      template: { metadata: { annotations: { [RESTARTED_AT_ANNOTATION]: restartedAt } } },
    };
  }
  return Object.keys(patch).length > 0 ? patch : undefined;
}

/** How far a start has got. */
export type StartProgress =
  | { readonly kind: "waiting" }
  | { readonly kind: "ready" }
  /** With `stopReason`, the agent is to be scaled to 0 and the reason recorded. */
  | { readonly kind: "failed"; readonly error: DeployError; readonly stopReason?: string };

/**
 * The progress of a start of `name` from the agent's facts: only a pod of this start counts
 * (this definition, this restart, not being deleted). `baselineRestarts` are the container
 * restarts of that pod that happened before the start.
 */
export function startProgress(
  name: string,
  facts: ClusterFacts,
  baselineRestarts: number,
  definitionSha: string,
  restartedAt: string | undefined,
): StartProgress {
  if (!isPodOfStart(facts.pod, definitionSha, restartedAt)) return { kind: "waiting" };
  if (facts.state === "RUNNING" && facts.health === "HEALTHY") return { kind: "ready" };
  if (facts.reason === "IMAGE_PULL_FAILED") {
    return {
      kind: "failed",
      stopReason: "IMAGE_PULL_FAILED",
      error: new DeployError(
        "AGENT_START_FAILED",
        `agent ${name}: the image cannot be pulled: ${facts.message}`,
        { agent: name },
      ),
    };
  }
  const restarts = (facts.container?.restartCount ?? 0) - baselineRestarts;
  const exitedNow = facts.container?.state?.terminated !== undefined;
  if ((restarts > 0 || exitedNow) && facts.lastExit !== undefined) {
    const exit = facts.lastExit;
    const how = exit.signal !== null ? `signal ${exit.signal}` : `exit code ${exit.code}`;
    return {
      kind: "failed",
      error: new DeployError(
        "AGENT_EXITED_DURING_START",
        `agent ${name} exited during start (${how})`,
        { agent: name },
      ),
    };
  }
  return { kind: "waiting" };
}

/** A start that ran out of time: the agent is scaled to 0 with `stopReason`. */
export function startTimedOut(
  name: string,
  facts: ClusterFacts,
): { readonly stopReason: string; readonly error: DeployError } {
  return {
    stopReason: facts.reason === "UNSCHEDULABLE" ? "UNSCHEDULABLE" : "START_TIMEOUT",
    error: new DeployError(
      "AGENT_START_TIMEOUT",
      `agent ${name} was not ready in time (${facts.reason}: ${facts.message})`,
      { agent: name },
    ),
  };
}

function isPodOfStart(
  pod: ClusterPod | undefined,
  definitionSha: string,
  restartedAt: string | undefined,
): boolean {
  return (
    pod !== undefined &&
    pod.metadata.deletionTimestamp === undefined &&
    pod.metadata.annotations?.[DEFINITION_SHA_ANNOTATION] === definitionSha &&
    (restartedAt === undefined ||
      pod.metadata.annotations?.[RESTARTED_AT_ANNOTATION] === restartedAt)
  );
}
