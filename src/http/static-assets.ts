/**
 * The dashboard's files (built by `npm run build:ui` into a directory, see `src/ui/build.ts`),
 * read once when the server starts and served from memory: every asset comes from the daemon,
 * none from the network. Each answer carries a strict Content-Security-Policy (scripts, styles,
 * images and fetches from this origin only; no inline code, no frames, no forms posting
 * anywhere, Trusted Types for DOM sinks), an ETag for revalidation, and a gzip body for clients
 * that accept it.
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

/**
 * Where `npm run build:ui` writes the dashboard and the daemon reads it by default: `dist-ui/`
 * at the package root (gitignored, shipped in the npm package).
 */
export const DEFAULT_UI_DIRECTORY = fileURLToPath(new URL("../../dist-ui/", import.meta.url));

/** The policy of every static answer: nothing but this origin, no inline script or style. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join("; ");

/** Headers every answer of the HTTP listener carries. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-origin",
});

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

/** Compressing these is worth it; images like PNG already are. */
const COMPRESSIBLE = new Set([".html", ".js", ".css", ".svg", ".json", ".txt"]);

export interface StaticAsset {
  readonly body: Buffer;
  readonly gzip: Buffer | undefined;
  readonly contentType: string;
  readonly etag: string;
}

/** The bundle's files by URL path; `/` and `/favicon.ico` are aliases. */
export type AssetTable = ReadonlyMap<string, StaticAsset>;

/**
 * Reads every file directly in `directory` (the bundle is flat). Resolves undefined when the
 * directory does not exist or has no `index.html` (not built yet).
 */
export async function loadAssets(directory: string): Promise<AssetTable | undefined> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const table = new Map<string, StaticAsset>();
  for (const name of names.sort()) {
    const ext = path.extname(name);
    const contentType = CONTENT_TYPES[ext];
    if (contentType === undefined) continue; // source maps, stray files: not served
    const body = await readFile(path.join(directory, name));
    table.set(`/${name}`, {
      body,
      gzip: COMPRESSIBLE.has(ext) ? gzipSync(body, { level: 9 }) : undefined,
      contentType,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
    });
  }
  const index = table.get("/index.html");
  if (index === undefined) return undefined;
  table.set("/", index);
  const icon = table.get("/favicon.svg");
  // Browsers ask for /favicon.ico whatever the page links; answer with the same icon.
  if (icon !== undefined && !table.has("/favicon.ico")) table.set("/favicon.ico", icon);
  return table;
}

/** True when an `Accept-Encoding` header value accepts gzip. */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (acceptEncoding === undefined) return false;
  return acceptEncoding.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    if (coding !== "gzip" && coding !== "*") return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}
