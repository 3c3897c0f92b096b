/**
 * Vitest global set-up: builds dist/ once before any test file runs. Tests import the
 * TypeScript sources, but every test that spawns an executable (`bin/atoll-deploy.js`,
 * `bin/atoll-agent.js`) runs the compiled code they load, which must match the sources under test
 * also when a single file is run with `npx vitest run <file>`.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  execFileSync("npm", ["run", "--silent", "build"], {
    cwd: fileURLToPath(new URL("..", import.meta.url)),
    stdio: ["ignore", "inherit", "inherit"],
  });
}
