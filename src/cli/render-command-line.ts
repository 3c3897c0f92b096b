/**
 * `atoll-deploy render [name...] [--namespace NS] [--image IMAGE] [--agents-dir DIR]`: the
 * command line of the manifest printer, which contacts no server.
 */
import { renderUsage } from "./command-help.ts";
import { RENDER_OPTIONS } from "./command-options.ts";
import type { CommandLine, RenderCommand } from "./command-spec.ts";
import {
  nonEmpty,
  parse,
  stringValue,
  UsageError,
  usageError,
  type Values,
} from "./parse-options.ts";

/** The arguments of `render` (the word itself removed). Never throws a UsageError. */
export function parseRenderCommand(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): CommandLine {
  const usage = renderUsage();
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parse(argv, RENDER_OPTIONS));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return usageError(`render: ${error.message}`, usage);
  }
  if (values.help === true) return { kind: "help", text: usage };
  for (const flag of ["namespace", "image", "agents-dir"]) {
    const value = values[flag];
    if (typeof value === "string" && value.trim() === "") {
      return usageError(`render: --${flag} is empty`, usage);
    }
  }
  const command: RenderCommand = {
    names: positionals,
    namespace: stringValue(values, "namespace"),
    image: stringValue(values, "image"),
    agentsDir:
      stringValue(values, "agents-dir") ??
      nonEmpty(env, "ATOLL_DEPLOY_AGENTS_DIRECTORY") ??
      "./atoll_agents",
  };
  return { kind: "render", command };
}
