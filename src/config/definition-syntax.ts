/**
 * Turns the text of `agent.toml` / `agent.json` into a plain table, or a one-line syntax error
 * naming the line (TOML and JSON) and column.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { describeValue, isTable, type Table } from "./config-values.ts";

/** Which syntax a definition file uses, from its file name. */
export type DefinitionSyntax = "toml" | "json";

/** `.json` (any case) is JSON; everything else is TOML. */
export function syntaxOf(filePath: string): DefinitionSyntax {
  return filePath.toLowerCase().endsWith(".json") ? "json" : "toml";
}

/** The parsed top-level table, or the problem (without the file name) when it does not parse. */
export type SyntaxResult =
  | { readonly ok: true; readonly root: Table }
  | { readonly ok: false; readonly problem: string };

/** Parses `text` as `syntax`; a leading byte order mark is ignored. Never throws. */
export function parseDefinitionText(text: string, syntax: DefinitionSyntax): SyntaxResult {
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  return syntax === "json" ? parseJsonText(body) : parseTomlText(body);
}

function parseTomlText(text: string): SyntaxResult {
  try {
    return { ok: true, root: parseToml(text) };
  } catch (error) {
    if (error instanceof TomlError) {
      // smol-toml's message carries a multi-line code frame after its first line.
      const first = (error.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
      return {
        ok: false,
        problem: `line ${error.line}, column ${error.column}: invalid TOML: ${first || "syntax error"}`,
      };
    }
    // smol-toml only throws TomlError for bad input; anything else (a stack overflow on absurd
    // nesting) is still a property of this file, so it is reported, not rethrown.
    return { ok: false, problem: `invalid TOML: ${(error as Error).message}` };
  }
}

/**
 * Parses JSON text that must hold an object; the problem names line and column when the text is
 * malformed. Never throws. Also used for the server configuration file.
 */
export function parseJsonObject(text: string): SyntaxResult {
  return parseJsonText(text.startsWith("\uFEFF") ? text.slice(1) : text);
}

function parseJsonText(text: string): SyntaxResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, problem: jsonProblem(text, (error as Error).message) };
  }
  if (!isTable(value)) {
    return { ok: false, problem: `top level must be a JSON object, got ${describeValue(value)}` };
  }
  return { ok: true, root: value };
}

/**
 * V8 says "… in JSON at position 16 (line 3 column 6)"; the location goes to the front, in the
 * same shape as for TOML. "Unexpected end of JSON input" has no position: it is the last line.
 * For an unexpected token V8 quotes the input itself ("Unexpected token 's', "s3cret…" is not
 * valid JSON"), which would put file content (a secret, for a definition that is a link to a
 * token file) into a message that ListAgents shows: that form is replaced by the position of the
 * offending character, found by {@link firstBadCharacter}. No problem ever quotes the text.
 */
function jsonProblem(text: string, message: string): string {
  const located =
    /^(.*?) (?:in|after) JSON at position (\d+)(?: \(line (\d+) column (\d+)\))?$/s.exec(message);
  if (located) {
    const [, what = "syntax error", positionText = "0", lineText, columnText] = located;
    const position = Number(positionText);
    const line = lineText ?? String(lineAt(text, position));
    const column = columnText ?? String(columnAt(text, position));
    return `line ${line}, column ${column}: invalid JSON: ${what}`;
  }
  if (/end of JSON input/.test(message)) {
    return `line ${lineAt(text, text.length)}: invalid JSON: unexpected end of file`;
  }
  const position = firstBadCharacter(text);
  return `line ${lineAt(text, position)}, column ${columnAt(text, position)}: invalid JSON: unexpected character`;
}

/**
 * Where JSON.parse first fails on `text` when it does not say: the shortest prefix that fails with
 * something else than "the input ended early" ends with the offending character. Prefixes of a
 * text fail monotonically (once the bad character is in, every longer prefix fails there too), so
 * a binary search finds it in about log2(length) parses.
 */
function firstBadCharacter(text: string): number {
  let low = 0; // the prefix of this length does not fail by itself
  let high = text.length; // the prefix of this length fails at a character it holds
  while (high - low > 1) {
    const middle = (low + high) >>> 1;
    if (failsWithin(text.slice(0, middle))) high = middle;
    else low = middle;
  }
  return high - 1;
}

/** True when `prefix` fails at one of its own characters, not merely because it stops early. */
function failsWithin(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return false;
  } catch (error) {
    const message = (error as Error).message;
    if (/end of JSON input/.test(message)) return false;
    const at = /at position (\d+)/.exec(message);
    // A failure at the very end ("Unterminated string in JSON at position <length>") means the
    // prefix merely stopped early.
    return at === null || Number(at[1]) < prefix.length;
  }
}

function columnAt(text: string, position: number): number {
  return position - text.lastIndexOf("\n", position - 1);
}

function lineAt(text: string, position: number): number {
  let line = 1;
  for (let i = 0; i < position && i < text.length; i++) if (text[i] === "\n") line++;
  return line;
}
