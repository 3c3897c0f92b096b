/**
 * The client's contexts file (SPEC §11): named servers with their credentials, like kubeconfig
 * contexts, so one client can address several daemons.
 *
 * `$XDG_CONFIG_HOME/atoll-deploy/contexts.toml` (an absolute XDG_CONFIG_HOME only, as the XDG
 * spec says), else `~/.config/atoll-deploy/contexts.toml`:
 *
 * ```toml
 * current = "prod"
 *
 * [contexts.prod]
 * server = "10.0.0.5:50051"
 * token_file = "/home/op/.config/atoll-deploy/prod.token"
 * tls_ca = "ca.pem"   # relative paths are relative to this file's directory
 * ```
 *
 * Reading is strict (a wrong type or unknown key stops the command with the file and key), and
 * writing is atomic (temp file, fsync, rename, directory fsync) with mode 0600: the file names
 * token files and may be edited by hand, so it is private to its owner.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { parse as parseToml, stringify as stringifyToml, TomlError } from "smol-toml";

/** Context names: the agent-name rule, so names are safe in messages, columns and TOML keys. */
export const CONTEXT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** One named server and how to reach it. Paths are absolute. */
export interface ClientContext {
  readonly name: string;
  /** `host:port` or `unix:/path`. */
  readonly server: string;
  readonly tokenFile: string | undefined;
  readonly tlsCa: string | undefined;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
}

/** The whole file; an absent file reads as no contexts and no current one. */
export interface ContextsFile {
  /** Absolute path of the file (it may not exist yet). */
  readonly path: string;
  readonly current: string | undefined;
  /** Sorted by name. */
  readonly contexts: readonly ClientContext[];
}

/** The file cannot be read or holds something wrong; the message names the file and key. */
export class ContextsFileError extends Error {
  override readonly name = "ContextsFileError";
}

/** The contexts file for this environment (see the module comment). */
export function contextsFilePath(
  env: Readonly<Record<string, string | undefined>>,
  homeDir: string,
): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg !== undefined && path.isAbsolute(xdg) ? xdg : path.join(homeDir, ".config");
  return path.join(base, "atoll-deploy", "contexts.toml");
}

const CONTEXT_KEYS = ["server", "token_file", "tls_ca", "tls_cert", "tls_key"] as const;
type ContextKey = (typeof CONTEXT_KEYS)[number];

function isTable(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)
  );
}

/** `~/x` → home-relative; relative → against the file's directory; absolute as is. */
function resolveFilePath(value: string, fileDir: string, homeDir: string): string {
  if (value === "~" || value.startsWith("~/")) return path.join(homeDir, value.slice(1));
  return path.resolve(fileDir, value);
}

/** True when `name` is a valid context name. */
export function isValidContextName(name: string): boolean {
  return CONTEXT_NAME_PATTERN.test(name);
}

/**
 * Parses the text of the contexts file at `filePath`.
 * @throws ContextsFileError naming the file, the key and the problem.
 */
export function parseContextsFile(text: string, filePath: string, homeDir: string): ContextsFile {
  const fail = (key: string, problem: string): never => {
    throw new ContextsFileError(`${filePath}: ${key === "" ? "" : `${key}: `}${problem}`);
  };
  let root: Record<string, unknown>;
  try {
    root = parseToml(text.startsWith("\uFEFF") ? text.slice(1) : text);
  } catch (error) {
    if (error instanceof TomlError) {
      const first = (error.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
      return fail("", `line ${error.line}, column ${error.column}: invalid TOML: ${first}`);
    }
    return fail("", `invalid TOML: ${(error as Error).message}`);
  }
  for (const key of Object.keys(root)) {
    if (key !== "current" && key !== "contexts")
      fail(key, "unknown key (known: current, contexts)");
  }
  const current = Object.hasOwn(root, "current") ? root.current : undefined;
  if (current !== undefined && typeof current !== "string") fail("current", "must be a string");
  const table = Object.hasOwn(root, "contexts") ? root.contexts : {};
  if (!isTable(table)) return fail("contexts", "must be a table of [contexts.<name>] tables");
  const fileDir = path.dirname(filePath);
  const contexts: ClientContext[] = [];
  for (const [name, entry] of Object.entries(table)) {
    const at = `contexts.${name}`;
    if (!isValidContextName(name)) {
      fail(at, `invalid context name: it must match ${CONTEXT_NAME_PATTERN.source}`);
    }
    if (!isTable(entry)) fail(at, "must be a table");
    const values: Partial<Record<ContextKey, string>> = {};
    for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
      if (!(CONTEXT_KEYS as readonly string[]).includes(key)) {
        fail(`${at}.${key}`, `unknown key (known: ${CONTEXT_KEYS.join(", ")})`);
      }
      if (typeof value !== "string" || value.trim() === "") {
        fail(`${at}.${key}`, "must be a non-empty string");
      }
      values[key as ContextKey] = value as string;
    }
    if (values.server === undefined) fail(`${at}.server`, "is missing");
    if ((values.tls_cert === undefined) !== (values.tls_key === undefined)) {
      fail(at, "tls_cert and tls_key go together");
    }
    const file = (value: string | undefined) =>
      value === undefined ? undefined : resolveFilePath(value, fileDir, homeDir);
    contexts.push(
      Object.freeze({
        name,
        server: values.server as string,
        tokenFile: file(values.token_file),
        tlsCa: file(values.tls_ca),
        tlsCert: file(values.tls_cert),
        tlsKey: file(values.tls_key),
      }),
    );
  }
  contexts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (current !== undefined && current !== "" && !contexts.some((c) => c.name === current)) {
    fail("current", `names context ${JSON.stringify(current)}, which is not defined`);
  }
  return Object.freeze({
    path: filePath,
    current: current === "" ? undefined : (current as string | undefined),
    contexts: Object.freeze(contexts),
  });
}

/**
 * Reads the contexts file; a missing file is an empty one.
 * @throws ContextsFileError when it exists but cannot be read or parsed.
 */
export async function loadContextsFile(filePath: string, homeDir: string): Promise<ContextsFile> {
  let text: string;
  try {
    text = await readFile(filePath, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      return Object.freeze({ path: filePath, current: undefined, contexts: Object.freeze([]) });
    }
    throw new ContextsFileError(`cannot read ${filePath}: ${code ?? (error as Error).message}`);
  }
  return parseContextsFile(text, filePath, homeDir);
}

/** The TOML text of `file` (paths written as stored: absolute). */
export function formatContextsFile(file: ContextsFile): string {
  const contexts: Record<string, Record<string, string>> = {};
  for (const context of file.contexts) {
    const entry: Record<string, string> = { server: context.server };
    if (context.tokenFile !== undefined) entry.token_file = context.tokenFile;
    if (context.tlsCa !== undefined) entry.tls_ca = context.tlsCa;
    if (context.tlsCert !== undefined) entry.tls_cert = context.tlsCert;
    if (context.tlsKey !== undefined) entry.tls_key = context.tlsKey;
    contexts[context.name] = entry;
  }
  const doc: Record<string, unknown> = {};
  if (file.current !== undefined) doc.current = file.current;
  doc.contexts = contexts;
  return `# atoll-deploy client contexts (atoll-deploy context --help)\n${stringifyToml(doc)}\n`;
}

/**
 * Writes `file` atomically with mode 0600: a temp file beside it (created 0600, never wider),
 * fsynced, renamed over the file, then the directory fsynced so the rename is durable. The
 * directory is created 0700 when missing.
 * @throws ContextsFileError when the file cannot be written.
 */
export async function saveContextsFile(file: ContextsFile): Promise<void> {
  const dir = path.dirname(file.path);
  const temp = path.join(dir, `.contexts.toml.${process.pid}.${randomBytes(4).toString("hex")}`);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const handle = await open(temp, "wx", 0o600);
    try {
      await handle.writeFile(formatContextsFile(file), "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file.path);
  } catch (error) {
    await unlink(temp).catch(() => {
      // Never created, or already renamed: nothing to remove.
    });
    const code = (error as NodeJS.ErrnoException).code;
    throw new ContextsFileError(`cannot write ${file.path}: ${code ?? (error as Error).message}`);
  }
  const handle = await open(dir, "r").catch(() => undefined);
  // Some file systems refuse fsync on a directory; the rename itself has happened.
  await handle?.sync().catch(() => undefined);
  await handle?.close();
}

/** `file` with `context` added (or replaced when `replace`), kept sorted. */
export function withContext(file: ContextsFile, context: ClientContext): ContextsFile {
  const contexts = [...file.contexts.filter((c) => c.name !== context.name), context].sort(
    (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  return Object.freeze({ ...file, contexts: Object.freeze(contexts) });
}

/** `file` without the context `name`; `current` is cleared when it named it. */
export function withoutContext(file: ContextsFile, name: string): ContextsFile {
  return Object.freeze({
    path: file.path,
    current: file.current === name ? undefined : file.current,
    contexts: Object.freeze(file.contexts.filter((c) => c.name !== name)),
  });
}
