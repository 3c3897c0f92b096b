/** The installed package's own version, for `--version`, the default image tag and logs. */
import { createRequire } from "node:module";

/**
 * The package version, from the package's own package.json. Found by the package's name (a
 * self-reference through `exports["./package.json"]`), so it works from the sources and from the
 * compiled `dist/src/`, which sit at different depths below it.
 */
export function packageVersion(): string {
  const pkg = createRequire(import.meta.url)("atoll-deploy/package.json") as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}
