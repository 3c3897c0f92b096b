/**
 * Builds the dashboard: bundles `src/ui/main.ts` (with `@connectrpc/connect-web` and the
 * generated code) and `styles.css` with esbuild, and copies `index.html` and the favicon, into
 * one flat directory that the daemon serves (`src/http/static-assets.ts`). Default output:
 * `dist-ui/` at the repository root (gitignored).
 *
 *   node src/ui/build.ts [outDir]        (npm run build:ui)
 *
 * Runs before the tests too (vitest globalSetup), so a fresh clone tests the page it ships.
 * Each file is written to a temporary name and renamed into place, so a server starting during a
 * rebuild reads either the old or the new file, never half of one.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { DEFAULT_UI_DIRECTORY } from "../http/static-assets.ts";

const UI_SOURCE = fileURLToPath(new URL(".", import.meta.url));

/** Browsers the bundle is written for: those with fetch streams and `<dialog>`. */
const TARGETS = ["chrome111", "firefox113", "safari16.4", "edge111"];

async function writeAtomically(file: string, contents: Uint8Array | string): Promise<void> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, contents);
  await rename(temporary, file);
}

/** Builds the dashboard into `outDir`; resolves with the files written (names). */
export async function buildDashboard(outDir: string = DEFAULT_UI_DIRECTORY): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const result = await build({
    entryPoints: {
      app: path.join(UI_SOURCE, "main.ts"),
      "app-style": path.join(UI_SOURCE, "styles.css"),
    },
    bundle: true,
    format: "esm",
    target: TARGETS,
    minify: true,
    legalComments: "none",
    charset: "utf8",
    outdir: outDir,
    write: false,
    logLevel: "silent",
  });
  const written: string[] = [];
  for (const file of result.outputFiles) {
    // esbuild names the stylesheet entry app-style.css; the page links /app.css.
    const name =
      path.basename(file.path) === "app-style.css" ? "app.css" : path.basename(file.path);
    await writeAtomically(path.join(outDir, name), file.contents);
    written.push(name);
  }
  for (const name of ["index.html", "favicon.svg"]) {
    await writeAtomically(path.join(outDir, name), await readFile(path.join(UI_SOURCE, name)));
    written.push(name);
  }
  return written.sort();
}

if (
  process.argv[1] !== undefined &&
  fileURLToPath(import.meta.url) === path.resolve(process.argv[1])
) {
  const outDir =
    process.argv[2] === undefined ? DEFAULT_UI_DIRECTORY : path.resolve(process.argv[2]);
  const files = await buildDashboard(outDir);
  process.stdout.write(`dashboard built into ${outDir}: ${files.join(", ")}\n`);
}
