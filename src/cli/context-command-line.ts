/**
 * `atoll-deploy context list | use NAME | add NAME --server ADDR [...] | remove NAME`: the
 * command line of the contexts file's editor, which contacts no server.
 */
import { contextUsage } from "./command-help.ts";
import { CONTEXT_ADD_OPTIONS } from "./command-options.ts";
import type { CommandLine, ContextAction } from "./command-spec.ts";
import { parse, stringValue, UsageError, usageError, type Values } from "./parse-options.ts";

/** The arguments of `context` (the word itself removed). Never throws a UsageError. */
export function parseContextCommand(argv: readonly string[]): CommandLine {
  const usage = contextUsage();
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parse(argv, CONTEXT_ADD_OPTIONS));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    return usageError(`context: ${error.message}`, usage);
  }
  if (values.help === true) return { kind: "help", text: usage };
  const [action, name, ...extra] = positionals;
  const connectionFlags = ["server", "token-file", "tls-ca", "tls-cert", "tls-key"].filter(
    (flag) => values[flag] !== undefined,
  );
  if (action === undefined)
    return usageError("context: missing action (list, use, add, remove)", usage);
  if (extra.length > 0)
    return usageError(`context ${action}: unexpected argument "${extra[0]}"`, usage);
  if (action !== "add" && connectionFlags.length > 0) {
    return usageError(`context ${action}: --${connectionFlags[0]} belongs to context add`, usage);
  }
  let command: ContextAction;
  switch (action) {
    case "list":
      if (name !== undefined)
        return usageError(`context list: unexpected argument "${name}"`, usage);
      command = { action, json: values.json === true };
      break;
    case "use":
    case "remove":
      if (name === undefined) return usageError(`context ${action}: missing context name`, usage);
      command = { action, name };
      break;
    case "add": {
      if (name === undefined) return usageError("context add: missing context name", usage);
      const server = stringValue(values, "server");
      if (server === undefined || server.trim() === "") {
        return usageError("context add: --server ADDR is required", usage);
      }
      const tlsCert = stringValue(values, "tls-cert");
      const tlsKey = stringValue(values, "tls-key");
      if ((tlsCert === undefined) !== (tlsKey === undefined)) {
        return usageError("context add: --tls-cert and --tls-key go together", usage);
      }
      command = {
        action,
        name,
        server,
        tokenFile: stringValue(values, "token-file"),
        tlsCa: stringValue(values, "tls-ca"),
        tlsCert,
        tlsKey,
      };
      break;
    }
    default:
      return usageError(`context: unknown action "${action}" (list, use, add, remove)`, usage);
  }
  return { kind: "context", command };
}
