/**
 * Vitest global set-up: builds dist/ once before any test file runs. Tests import the
 * TypeScript sources, but every test that spawns an executable (`bin/atoll-deploy.js`,
 * `bin/atoll-agent.js`) runs the compiled code they load, which must match the sources under test
 * also when a single file is run with `npx vitest run <file>`.
 *
 * A type error does not stop the tests (vitest does not type-check either; `npx tsc --noEmit` and
 * CI do): tsc still writes the JavaScript, and its report is shown.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  const build = spawnSync("npm", ["run", "--silent", "build"], {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (build.error !== undefined) throw build.error;
  if (build.status !== 0) {
    process.stderr.write(`npm run build exited with ${build.status}; testing what it wrote\n`);
  }
}
