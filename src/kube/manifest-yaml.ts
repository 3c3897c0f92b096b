/**
 * Kubernetes objects as YAML documents separated by `---`, written by the `yaml` package.
 *
 * kubectl reads YAML through sigs.k8s.io/yaml, whose go-yaml speaks YAML 1.1 (`yes`, `on`, `017`
 * are booleans and numbers there), while most other tools speak 1.2 (`0o17` is a number there).
 * A one-line string that would read back as anything but itself under either version is written
 * double-quoted, so a hostile or unlucky value (an env value `yes`, a command argument `0o17`)
 * reaches the cluster exactly as the definition wrote it. Multi-line text (the definition file)
 * is a block scalar, which never changes type.
 */
import { Document, parse, Scalar, visit } from "yaml";
import type { KubeObject } from "./render.ts";

function readsBackAsItself(text: string): boolean {
  // go-yaml resolves a plain `<<` to its merge tag and `=` to its value tag anywhere.
  if (text === "<<" || text === "=") return false;
  try {
    return (
      parse(text, { version: "1.1", logLevel: "silent" }) === text &&
      parse(text, { version: "1.2", logLevel: "silent" }) === text
    );
  } catch {
    // Unparseable alone (a stray quote or indicator): it needs quotes to be a string.
    return false;
  }
}

/** One object as one YAML document (ends with a newline). */
export function toYamlDocument(object: KubeObject): string {
  // No anchors and aliases: shared sub-objects (the probes) are written out in full.
  const doc = new Document(object, { version: "1.1", aliasDuplicateObjects: false });
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== "string" || node.value.includes("\n")) return;
      if (!readsBackAsItself(node.value)) node.type = Scalar.QUOTE_DOUBLE;
    },
  });
  // Long lines stay as written: folding would change nothing but make diffs noisy.
  return doc.toString({ lineWidth: 0 });
}

/** The documents of `objects`, separated by `---` lines. */
export function toYamlDocuments(objects: readonly KubeObject[]): string {
  return objects.map(toYamlDocument).join("---\n");
}
