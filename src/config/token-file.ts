/**
 * Reading the bearer token of `auth_token_file` (SPEC §3) once at start-up, strictly: a token that
 * could never authenticate (it holds a space, a control character, or nothing) stops `serve`
 * with a ConfigError (exit 2) instead of locking every client out at run time, and a file that
 * other users may read is warned about.
 */
import { readFileSync, statSync } from "node:fs";
import { ConfigError } from "./config-error.ts";
import { osProblem } from "./config-values.ts";

/** Longest token accepted, in characters (a header line must stay small). */
const MAX_TOKEN_LENGTH = 4096;

/** The token and what is worth warning about. */
export interface AuthToken {
  readonly token: string;
  readonly warnings: readonly string[];
}

/**
 * Reads the token: the file's content without its trailing line break(s). Every character must be
 * printable ASCII without space (0x21-0x7e, which covers RFC 6750's b64token), because the token
 * travels as `authorization: Bearer <token>`.
 * @throws ConfigError naming the file and `auth_token_file` when the file cannot be read or the
 *   token is empty, too long, or holds whitespace or non-printable characters (which position).
 */
export function readAuthToken(file: string): AuthToken {
  const fail = (problem: string): never => {
    throw new ConfigError(`auth token file ${file}: ${problem}`, { file, key: "auth_token_file" });
  };
  let text: string;
  let mode: number;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, "utf8");
  } catch (error) {
    return fail(`cannot read: ${osProblem(error)}`);
  }
  const token = text.replace(/[\r\n]+$/, "");
  if (token === "") fail("is empty");
  if (token.length > MAX_TOKEN_LENGTH)
    fail(`the token is longer than ${MAX_TOKEN_LENGTH} characters`);
  for (let index = 0; index < token.length; index++) {
    const code = token.charCodeAt(index);
    if (code < 0x21 || code > 0x7e) {
      // Say where and what, never the token itself: the message goes to logs.
      const what =
        code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d
          ? "whitespace"
          : "a non-printable or non-ASCII character";
      fail(
        `the token holds ${what} at character ${index + 1}; a bearer token must be printable ASCII without spaces`,
      );
    }
  }
  const warnings: string[] = [];
  if ((mode & 0o077) !== 0) {
    warnings.push(
      `auth token file ${file} may be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, "0")}); restrict it with chmod 600`,
    );
  }
  return { token, warnings };
}
