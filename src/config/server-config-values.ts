/**
 * Reading one server configuration value from one source (file, environment or flag) into its
 * type, with the range checks of SPEC §3. Problems throw a ConfigError naming the source.
 */
import { isIP } from "node:net";
import path from "node:path";
import { ConfigError } from "./config-error.ts";
import { describeValue } from "./config-values.ts";
import type { ServerConfigKeyInfo } from "./server-config-keys.ts";
import { checkValue, serverValueSpec } from "./value-schema.ts";

/**
 * Where a value came from; `label` names it in messages. `option`: set in code by a program
 * embedding the server, typed like the file's values and checked as strictly.
 */
export type ValueOrigin =
  | { readonly source: "file"; readonly file: string; readonly key: string; readonly label: string }
  | { readonly source: "env" | "flag" | "option"; readonly key: string; readonly label: string };

/** A value in its final form: paths absolute, durations still in seconds. */
export type ConfigValue = string | number | boolean;

/** Context for resolving paths. */
export interface PathContext {
  readonly cwd: string;
  readonly homeDir: string;
}

/** Throws a ConfigError `<label>: <problem>` located at `origin`. */
export function failAt(origin: ValueOrigin, problem: string): never {
  throw new ConfigError(`${origin.label}: ${problem}`, {
    file: origin.source === "file" ? origin.file : undefined,
    key: origin.key,
  });
}

/**
 * Converts `raw` (a JSON value from the file or an option, a string from the environment, a
 * string or a boolean from a flag) to the key's type and checks its range.
 * @returns undefined only for `null` in the file or an option for a key whose default is "none".
 * @throws ConfigError naming `origin`.
 */
export function convertValue(
  info: ServerConfigKeyInfo,
  raw: unknown,
  origin: ValueOrigin,
  paths: PathContext,
): ConfigValue | undefined {
  // Text from the environment or a flag is parsed; the file and options must hold the type.
  const fromText = typeof raw === "string" && (origin.source === "env" || origin.source === "flag");
  const typed = origin.source === "file" || origin.source === "option";
  if (raw === null && typed && info.defaultText === "none") return undefined;
  switch (info.type) {
    case "boolean": {
      if (typeof raw === "boolean") return raw;
      const parsed = fromText ? parseBooleanText(raw) : undefined;
      if (parsed !== undefined) return parsed;
      return failAt(
        origin,
        `must be ${fromText ? "true or false (or 1/0, yes/no, on/off)" : "true or false"}, got ${describeValue(raw)}`,
      );
    }
    case "size":
    case "integer":
    case "number": {
      // Ranges, units, defaults and what 0 means: the value schema (value-schema.ts).
      const checked = checkValue(serverValueSpec(info.key), raw, { fromText, path: origin.label });
      if (!checked.ok) return failAt(origin, checked.problem);
      return checked.value;
    }
    default: {
      if (typeof raw !== "string") {
        if (typeof raw === "boolean" && origin.source === "flag")
          return failAt(origin, "needs a value");
        return failAt(origin, `must be a string, got ${describeValue(raw)}`);
      }
      if (raw === "") return failAt(origin, "must not be empty");
      if (raw.includes("\0")) return failAt(origin, "must not contain a NUL character");
      if (info.type === "path") return resolvePath(raw, paths);
      return checkString(info, raw, origin, paths);
    }
  }
}

function checkString(
  info: ServerConfigKeyInfo,
  raw: string,
  origin: ValueOrigin,
  paths: PathContext,
): string {
  if (info.choices !== undefined) {
    const lower = raw.toLowerCase();
    if (info.choices.includes(lower)) return lower;
    return failAt(origin, `must be one of ${info.choices.join(", ")}, got ${describeValue(raw)}`);
  }
  if (info.key === "host") {
    if (isValidHost(raw)) return raw;
    return failAt(
      origin,
      `must be a host name or an IP address (IPv6 without brackets), got ${describeValue(raw)}`,
    );
  }
  if (info.key === "listen") return checkListen(raw, origin, paths);
  if (info.key === "http_listen") return checkHttpListen(raw, origin);
  return raw;
}

/**
 * Longest Unix socket path: `sun_path` holds 108 bytes on Linux (104 on macOS) including the
 * terminating NUL; a longer path fails at bind time with an obscure error.
 */
const MAX_UNIX_SOCKET_PATH_BYTES = 103;

/**
 * `host:port` (`[v6]:port` for IPv6; port 0 binds any free port, as tests do) or `unix:PATH`;
 * a relative socket path is made absolute, so the result is `unix:/absolute/path`.
 */
function checkListen(raw: string, origin: ValueOrigin, paths: PathContext): string {
  if (raw.startsWith("unix:")) {
    let socketPath = raw.slice("unix:".length);
    // grpc-js also accepts the URI form unix:///absolute/path.
    if (socketPath.startsWith("//")) socketPath = socketPath.slice(2);
    if (socketPath === "")
      return failAt(origin, "unix: needs a socket path, e.g. unix:/run/atoll-deploy.sock");
    const absolute = resolvePath(socketPath, paths);
    if (Buffer.byteLength(absolute) > MAX_UNIX_SOCKET_PATH_BYTES) {
      return failAt(
        origin,
        `unix socket path ${describeValue(absolute)} is longer than ${MAX_UNIX_SOCKET_PATH_BYTES} bytes`,
      );
    }
    return `unix:${absolute}`;
  }
  if (!isHostPort(raw)) {
    return failAt(
      origin,
      `must be host:port (port 0-65535, IPv6 as [addr]:port) or unix:/path, got ${describeValue(raw)}`,
    );
  }
  return raw;
}

/** `host:port` with port 0-65535, the host a name or an address, IPv6 in brackets. */
function isHostPort(raw: string): boolean {
  const match = /^(\[([^\]]+)\]|[^:[\]]+):(\d{1,5})$/.exec(raw);
  const host = match?.[2] ?? match?.[1];
  const port = Number(match?.[3]);
  const hostOk =
    host !== undefined && (match?.[2] === undefined ? isValidHost(host) : isIP(host) === 6);
  return hostOk && port >= 0 && port <= 65535;
}

/** The value of `http_listen` that turns the HTTP listener off. */
export const HTTP_LISTEN_OFF = "off";

/** `host:port` (port 0 binds any free port) or `off` in any case, returned lower-cased. */
function checkHttpListen(raw: string, origin: ValueOrigin): string {
  if (raw.toLowerCase() === HTTP_LISTEN_OFF) return HTTP_LISTEN_OFF;
  if (isHostPort(raw)) return raw;
  return failAt(
    origin,
    `must be host:port (port 0-65535, IPv6 as [addr]:port) or off, got ${describeValue(raw)}`,
  );
}

const HOST_LABEL = /^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** An IPv4 or IPv6 address, or a DNS name (labels of letters, digits, `-` and `_`). */
export function isValidHost(host: string): boolean {
  if (isIP(host) !== 0) return true;
  if (host.length > 253) return false;
  return host.split(".").every((label) => HOST_LABEL.test(label));
}

/** `~` and `~/…` expand to the home directory; the result is absolute (against `cwd`). */
export function resolvePath(value: string, paths: PathContext): string {
  const expanded =
    value === "~"
      ? paths.homeDir
      : value.startsWith("~/")
        ? path.join(paths.homeDir, value.slice(2))
        : value;
  return path.resolve(paths.cwd, expanded);
}

function parseBooleanText(text: string): boolean | undefined {
  const lower = text.trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(lower)) return true;
  if (["false", "0", "no", "off"].includes(lower)) return false;
  return undefined;
}
