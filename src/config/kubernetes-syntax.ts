/**
 * The syntax rules of the Kubernetes API for the values an agent definition may carry into a
 * cluster (`[kubernetes]` keys) and for the object names `render` derives. Pure checks; each
 * rule cites the API's own definition:
 * https://kubernetes.io/docs/concepts/overview/working-with-objects/names/ and
 * https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
 */

/** RFC 1123 label: lower-case alphanumerics and `-`, alphanumeric at both ends, ≤ 63. */
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** RFC 1123 subdomain: labels joined by `.`, ≤ 253. */
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Label name (and the part of a key after the prefix) and non-empty label values, ≤ 63. */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** True for an RFC 1123 label (namespaces, Service names). */
export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}

/** True for an RFC 1123 subdomain (ConfigMap and Deployment names, label key prefixes). */
export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && DNS1123_SUBDOMAIN.test(value);
}

/** The problem with `value` as a label value, or undefined when it is valid (empty is valid). */
export function labelValueProblem(value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > 63) return "a label value is at most 63 characters";
  if (!LABEL_NAME.test(value)) {
    return 'a label value holds letters, digits, "-", "_" and "." and starts and ends with a letter or digit';
  }
  return undefined;
}

/** The problem with `key` as a label key (`[prefix/]name`), or undefined when it is valid. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && !isDns1123Subdomain(prefix)) {
    return "the prefix of a label key (before /) must be a lower-case DNS subdomain";
  }
  if (name === "" || name.length > 63 || !LABEL_NAME.test(name)) {
    return 'the name of a label key is 1 to 63 letters, digits, "-", "_" or "." starting and ending with a letter or digit';
  }
  return undefined;
}

/**
 * A CPU quantity as Kubernetes reads it: cores (`2`, `0.5`) or millicores (`500m`), above zero.
 * Finer than one millicore is refused: the API would round it up silently.
 * @returns the canonical text (the value as written, numbers as their decimal form), or the problem.
 */
export function parseCpuQuantity(
  value: string | number,
): { readonly ok: true; readonly text: string } | { readonly ok: false; readonly problem: string } {
  const text = typeof value === "number" ? String(value) : value;
  const match = /^(\d+(?:\.(\d+))?|\.(\d+))(m?)$/.exec(text);
  if (match === null) {
    return { ok: false, problem: 'must be a number of cores (2, 0.5) or of millicores ("500m")' };
  }
  const fraction = match[2] ?? match[3] ?? "";
  const milli = match[4] === "m";
  if ((milli && fraction !== "") || (!milli && fraction.length > 3)) {
    return {
      ok: false,
      problem: "must be a whole number of millicores (at most 3 decimals of a core)",
    };
  }
  if (Number(match[1]) <= 0) return { ok: false, problem: "must be above 0" };
  return { ok: true, text };
}

/**
 * Container image references: `[registry[:port]/]path[:tag][@digest]`, checked loosely (the
 * registry decides the rest) but never with spaces, control characters or an empty part.
 * https://github.com/distribution/reference (the grammar kubelet and the runtimes use)
 */
const IMAGE_REFERENCE =
  /^[A-Za-z0-9][A-Za-z0-9._-]*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([+._-][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$/;

/** True for a plausible container image reference (see IMAGE_REFERENCE). */
export function isImageReference(value: string): boolean {
  return value.length <= 1024 && IMAGE_REFERENCE.test(value);
}
