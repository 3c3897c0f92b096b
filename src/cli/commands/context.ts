/**
 * `atoll-deploy context list | use NAME | add NAME --server ADDR [...] | remove NAME`: shows and
 * edits the contexts file (`client-contexts.ts`). Contacts no server.
 */
import path from "node:path";
import {
  type ContextsFile,
  ContextsFileError,
  isValidContextName,
  loadContextsFile,
  saveContextsFile,
  withContext,
  withoutContext,
} from "../client-contexts.ts";
import type { ContextAction } from "../command-spec.ts";
import { EXIT, type TextSink } from "../context.ts";
import { failureLine, jsonDocument } from "../format.ts";
import type { Style } from "../style.ts";

export interface ContextCommandIo {
  readonly file: string;
  readonly homeDir: string;
  /** Relative paths given to `add` are stored absolute, against this. */
  readonly cwd: string;
  readonly stdout: TextSink;
  readonly stderr: TextSink;
  readonly style: Style;
  readonly errorStyle: Style;
}

function table(file: ContextsFile): string {
  const rows = [
    ["Current", "Context", "Server"],
    ...file.contexts.map((c) => [c.name === file.current ? "*" : "", c.name, c.server]),
  ];
  const widths = [0, 1].map((i) => Math.max(...rows.map((r) => r[i]?.length ?? 0)));
  return `${rows
    .map((r) => r.map((cell, i) => (i < 2 ? cell.padEnd(widths[i] ?? 0) : cell)).join("  "))
    .join("\n")}\n`;
}

/** Runs one context action; resolves with the exit status. */
export async function contextCommand(action: ContextAction, io: ContextCommandIo): Promise<number> {
  const fail = (message: string, code: number = EXIT.FAILED): number => {
    io.stderr.write(`${failureLine(undefined, message, io.errorStyle)}\n`);
    return code;
  };
  const ok = (message: string): number => {
    io.stdout.write(`${io.style.green("✓")} ${message}\n`);
    return EXIT.OK;
  };
  let file: ContextsFile;
  try {
    file = await loadContextsFile(io.file, io.homeDir);
  } catch (error) {
    if (error instanceof ContextsFileError) return fail(error.message, EXIT.USAGE);
    throw error;
  }
  const find = (name: string) => file.contexts.find((c) => c.name === name);
  /** Saves `next`; the problem when it could not be written. */
  const save = async (next: ContextsFile): Promise<string | undefined> => {
    try {
      await saveContextsFile(next);
      return undefined;
    } catch (error) {
      if (error instanceof ContextsFileError) return error.message;
      throw error;
    }
  };
  switch (action.action) {
    case "list":
      if (action.json) {
        io.stdout.write(
          jsonDocument({
            file: file.path,
            current: file.current ?? null,
            contexts: file.contexts.map((c) => ({
              name: c.name,
              server: c.server,
              tokenFile: c.tokenFile ?? null,
              tlsCa: c.tlsCa ?? null,
              tlsCert: c.tlsCert ?? null,
              tlsKey: c.tlsKey ?? null,
            })),
          }),
        );
      } else {
        io.stdout.write(table(file));
      }
      return EXIT.OK;
    case "use": {
      const context = find(action.name);
      if (context === undefined)
        return fail(`no context ${JSON.stringify(action.name)} in ${file.path}`);
      const problem = await save({ ...file, current: context.name });
      if (problem !== undefined) return fail(problem);
      return ok(`Switched to context ${context.name} (${context.server})`);
    }
    case "remove": {
      if (find(action.name) === undefined) {
        return fail(`no context ${JSON.stringify(action.name)} in ${file.path}`);
      }
      const problem = await save(withoutContext(file, action.name));
      if (problem !== undefined) return fail(problem);
      return ok(`Context ${action.name} removed`);
    }
    case "add": {
      if (!isValidContextName(action.name)) {
        return fail(
          `invalid context name ${JSON.stringify(action.name)}: 1 to 63 letters, digits, "_", "." or "-", starting with a letter or digit`,
          EXIT.USAGE,
        );
      }
      if (find(action.name) !== undefined) {
        return fail(`context ${action.name} already exists in ${file.path}; remove it first`);
      }
      const absolute = (value: string | undefined) =>
        value === undefined ? undefined : path.resolve(io.cwd, value);
      const becomesCurrent = file.current === undefined && file.contexts.length === 0;
      const next = withContext(becomesCurrent ? { ...file, current: action.name } : file, {
        name: action.name,
        server: action.server,
        tokenFile: absolute(action.tokenFile),
        tlsCa: absolute(action.tlsCa),
        tlsCert: absolute(action.tlsCert),
        tlsKey: absolute(action.tlsKey),
      });
      const problem = await save(next);
      if (problem !== undefined) return fail(problem);
      return ok(
        `Context ${action.name} added (${action.server})${becomesCurrent ? "; it is the current context" : ""}`,
      );
    }
  }
}
