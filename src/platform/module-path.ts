/**
 * Paths of this package's own modules for spawning them as separate processes (the bundled
 * `atoll-agent`, and any other helper process): resolved next to the calling module, with its
 * extension, so the same code spawns `src/…/x.ts` when run from the sources (type stripping,
 * tests) and `dist/src/…/x.js` when run from the build or an installed package.
 */
import { fileURLToPath } from "node:url";

/**
 * The absolute path of the module `specifier` (relative, without extension: `"../agent/main"`)
 * beside `base` (the caller's `import.meta.url`), with `base`'s extension (`.ts` or `.js`).
 */
export function siblingModulePath(base: string, specifier: string): string {
  const extension = new URL(base).pathname.endsWith(".ts") ? ".ts" : ".js";
  return fileURLToPath(new URL(`${specifier}${extension}`, base));
}
