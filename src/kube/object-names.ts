/**
 * Names and labels of the Kubernetes objects of an agent (SPEC §11): `atoll-<name>` with the
 * name lower-cased and `_` and `.` turned into `-`. A name that does not survive as a DNS-1123
 * label (too long, ending in `-` after mapping) is refused, never cut or patched up: two agents
 * must never end up sharing objects, and an operator must find an agent's objects by its name.
 */
import { isDns1123Label, labelValueProblem } from "../config/kubernetes-syntax.ts";

/** Prefix of every object name. */
export const OBJECT_NAME_PREFIX = "atoll-";
/** `app.kubernetes.io/name`: the agent's own name (case kept). */
export const NAME_LABEL = "app.kubernetes.io/name";
/** `app.kubernetes.io/managed-by: atoll-deploy` on every object. */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY = "atoll-deploy";
/** Pod-template annotation: sha256 of the definition file, so an edited definition rolls the pod. */
export const DEFINITION_SHA_ANNOTATION = "atoll.dev/definition-sha256";

export type NameResult =
  | { readonly ok: true; readonly name: string }
  | { readonly ok: false; readonly problem: string };

/** `atoll-<name>` for the agent `agentName`, or why the cluster cannot name it so. */
export function objectName(agentName: string): NameResult {
  const name = `${OBJECT_NAME_PREFIX}${agentName.toLowerCase().replace(/[_.]/g, "-")}`;
  if (name.length > 63) {
    return {
      ok: false,
      problem: `maps to the object name ${name}, longer than the 63 characters a Kubernetes Service name may have (use an agent name of at most ${63 - OBJECT_NAME_PREFIX.length} characters)`,
    };
  }
  if (!isDns1123Label(name)) {
    return {
      ok: false,
      problem: `maps to the object name ${JSON.stringify(name)}, which is not a DNS-1123 label (it must end with a letter or digit)`,
    };
  }
  const labelProblem = labelValueProblem(agentName);
  if (labelProblem !== undefined) {
    return { ok: false, problem: `cannot be the label ${NAME_LABEL}: ${labelProblem}` };
  }
  return { ok: true, name };
}

/** The labels on every object of agent `agentName`; also the selector of its pods. */
export function agentLabels(agentName: string): Readonly<Record<string, string>> {
  return Object.freeze({ [NAME_LABEL]: agentName, [MANAGED_BY_LABEL]: MANAGED_BY });
}

/** The label selector (`key=value,...`) matching the pods of agent `agentName`. */
export function agentSelector(agentName: string): string {
  return Object.entries(agentLabels(agentName))
    .map(([key, value]) => `${key}=${value}`)
    .join(",");
}

/** The label selector matching every object atoll-deploy manages. */
export const MANAGED_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;
