// What both executables run first (SPEC §10): a Node.js version check, then the compiled entry
// point in dist/ (`npm run build`; `npm ci`, `npm start`, `npm test` and `npm pack` build it).
//
// Plain JavaScript that any Node.js since 12 parses and runs, with no imports of its own: the
// entry point is imported dynamically and only after the check, because static imports are
// loaded before any code of the importing module runs and would fail on an old Node.js (with a
// stack trace about a missing export or syntax) before the check could say why.
// Keep MINIMUM equal to package.json's `engines.node` (tests/package/executables.test.ts).

/**
 * The oldest Node.js that runs atoll-deploy (SPEC §10: Node 22 or later; the daemon, the CLI, the
 * agent runtime and the library were run on 22.0.0). The code keeps to 22.0's APIs: for example
 * `util.getSystemErrorMap`, not 22.12's `getSystemErrorMessage`.
 */
export const MINIMUM = [22, 0, 0];

/**
 * True when this Node.js is at least MINIMUM. Otherwise writes one line to stderr naming the
 * version needed and sets the exit status 2.
 * @param {string} program the executable's name, for the message
 * @returns {boolean}
 */
export function nodeIsRecentEnough(program) {
  const have = process.versions.node.split(".").map(Number);
  for (let i = 0; i < MINIMUM.length; i += 1) {
    const part = have[i] || 0;
    if (part > MINIMUM[i]) return true;
    if (part < MINIMUM[i]) {
      process.stderr.write(
        `${program}: needs Node.js ${MINIMUM.join(".")} or later, but this is Node.js ${process.versions.node} (${process.execPath})\n`,
      );
      process.exitCode = 2;
      return false;
    }
  }
  return true;
}

/**
 * Checks the Node.js version, then imports `entry` (a path relative to this file) and lets it
 * run. A missing build is reported in one line; any other load failure with its stack.
 * @param {string} program the executable's name, for messages
 * @param {string} entry the compiled entry module, relative to this file
 */
export function launch(program, entry) {
  if (!nodeIsRecentEnough(program)) return;
  const url = new URL(entry, import.meta.url);
  import(url.href).catch((error) => {
    const missing =
      error instanceof Error && error.code === "ERR_MODULE_NOT_FOUND" && error.url === url.href;
    process.stderr.write(
      missing
        ? `${program}: ${url.pathname} is missing: run \`npm run build\` in ${new URL("..", import.meta.url).pathname}\n`
        : `${program}: cannot load ${url.pathname}: ${error instanceof Error ? error.stack : error}\n`,
    );
    process.exitCode = 1;
  });
}
