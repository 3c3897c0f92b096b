/**
 * Provisioning an unpacked package (SPEC §12), off the event loop in child processes, under one
 * time limit for all steps, each step's output appended to the agent's log and its last lines
 * kept for the error:
 *
 * - `npm`: a `package.json` with `dependencies` or `optionalDependencies` gets
 *   `npm ci --omit=dev --ignore-scripts` in the package directory. `--ignore-scripts` because
 *   the daemon runs nothing from a package but the agent's own command: no install script of
 *   the package or of its dependencies runs (native addons must ship prebuilt binaries).
 *   `npm ci` needs the package's `package-lock.json`.
 * - `venv`: a `requirements.txt` gets `python3 -I -m venv .venv`, then, when the file names
 *   anything, `.venv/bin/python -I -m pip install --only-binary=:all: -r requirements.txt`.
 *   `-I` keeps the package directory off `sys.path` (a `pip.py` in the package is not imported)
 *   and ignores `PYTHON*` variables; `--only-binary=:all:` installs wheels only, which run no code
 *   at install time (an sdist's setup.py would).
 *
 * Each step is its own process group, ended (SIGTERM, then SIGKILL) when the time limit passes or
 * the install is abandoned. Nothing runs through a shell.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { ProvisioningStep } from "../core/agent-status.ts";
import { runInBackground } from "../core/background-task.ts";
import { DeployError } from "../core/errors.ts";
import { terminateGroup } from "../platform/terminate-group.ts";

/** Default time limit of all provisioning steps of one install: 10 minutes. */
export const DEFAULT_PROVISION_TIMEOUT_MS = 10 * 60 * 1000;

/** Lines of output kept for the PROVISIONING_FAILED message. */
const LAST_LINES = 20;
/** Characters kept of one such line. */
const MAX_LINE_CHARS = 400;
/** Grace between SIGTERM and SIGKILL when a step is ended. */
const STOP_GRACE_MS = 2_000;

export interface ProvisionOptions {
  /** The unpacked package, at its final path (a virtual environment holds absolute paths). */
  readonly dir: string;
  /** The agent, for messages. */
  readonly name: string;
  /** The agent's log: output is appended. */
  readonly logPath: string;
  /** Environment of the steps (the daemon's): PATH finds npm and python3, HOME their caches. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Time limit of all steps together, ms. */
  readonly timeoutMs: number;
  /** Aborted when the install is abandoned (client gone, server draining). */
  readonly signal: AbortSignal;
  /** Interpreter that makes the virtual environment; default `python3` (looked up in PATH). */
  readonly python?: string;
  /** npm executable; default `npm` (looked up in PATH). */
  readonly npm?: string;
  /** Told when each step starts (progress for the log and tests). */
  readonly onStep?: (step: ProvisioningStep) => void;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function hasEntries(value: unknown): boolean {
  return typeof value === "object" && value !== null && Object.keys(value).length > 0;
}

/** True when `requirements.txt` names anything (a line that is not blank or a comment). */
function namesRequirements(text: string): boolean {
  return text.split(/\r?\n/).some((line) => {
    const trimmed = line.trim();
    return trimmed !== "" && !trimmed.startsWith("#");
  });
}

/**
 * The steps the package in `dir` needs, in order.
 * @throws PROVISIONING_FAILED when `package.json` is not valid JSON.
 */
export async function planProvisioning(dir: string): Promise<ProvisioningStep[]> {
  const steps: ProvisioningStep[] = [];
  const manifest = path.join(dir, "package.json");
  if (await isFile(manifest)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(manifest, "utf8"));
    } catch (error) {
      throw new DeployError(
        "PROVISIONING_FAILED",
        `package.json is not valid JSON: ${(error as Error).message}`,
      );
    }
    const { dependencies, optionalDependencies } = (parsed ?? {}) as Record<string, unknown>;
    if (hasEntries(dependencies) || hasEntries(optionalDependencies)) steps.push("npm");
  }
  if (await isFile(path.join(dir, "requirements.txt"))) steps.push("venv");
  return steps;
}

/** The last lines of a process's output, cut to a bounded size. */
class LastLines {
  readonly #lines: string[] = [];
  #partial = "";

  push(text: string): void {
    const parts = (this.#partial + text).split(/\r?\n/);
    this.#partial = (parts.pop() ?? "").slice(-MAX_LINE_CHARS);
    for (const line of parts) this.#add(line);
  }

  #add(line: string): void {
    if (line.trim() === "") return;
    this.#lines.push(line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line);
    if (this.#lines.length > LAST_LINES) this.#lines.shift();
  }

  get lines(): string[] {
    const out = [...this.#lines];
    if (this.#partial.trim() !== "") out.push(this.#partial);
    return out.slice(-LAST_LINES);
  }
}

interface Command {
  readonly step: ProvisioningStep;
  readonly argv: readonly string[];
  readonly cwd: string;
}

/**
 * Runs `command`, its output to `log` and `tail`; resolves on exit code 0.
 * @throws PROVISIONING_FAILED (exit code, signal, missing program, time limit) or the abort reason.
 */
async function runCommand(
  command: Command,
  options: ProvisionOptions,
  env: Record<string, string>,
  deadlineMs: number,
  log: WriteStream,
  tail: LastLines,
): Promise<void> {
  const [program, ...args] = command.argv;
  if (program === undefined) throw new Error("empty provisioning command");
  const shown = command.argv.join(" ");
  log.write(`[atoll-deploy] provisioning ${options.name}: ${shown}\n`);
  const child = spawn(program, args, {
    cwd: command.cwd,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
    (resolve) => {
      child.once("error", (error) => resolve({ code: null, signal: null, error }));
      child.once("close", (code, signal) => resolve({ code, signal }));
    },
  );
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding("utf8");
    stream?.on("data", (text: string) => {
      log.write(text);
      tail.push(text);
    });
  }
  let ended: "timeout" | "aborted" | undefined;
  const stop = (why: "timeout" | "aborted"): void => {
    if (ended !== undefined || child.pid === undefined) return;
    ended = why;
    const pid = child.pid;
    runInBackground(
      {
        // Should ending the group fail, the agent's log says so (while it is open: the leader
        // may be gone and the install over) and the leader is killed alone, so that the wait
        // below still ends.
        onFailure: (_task, error) => {
          if (!log.writableEnded) {
            log.write(
              `[atoll-deploy] provisioning ${options.name}: could not end ${shown}: ${String(error)}\n`,
            );
          }
          child.kill("SIGKILL");
        },
      },
      "end provisioning step",
      () => terminateGroup(pid, { stopTimeoutMs: STOP_GRACE_MS, exited }),
    );
  };
  const timer = setTimeout(() => stop("timeout"), Math.max(0, deadlineMs - Date.now()));
  const onAbort = (): void => stop("aborted");
  options.signal.addEventListener("abort", onAbort, { once: true });
  if (options.signal.aborted) onAbort();
  let result: Awaited<typeof exited>;
  try {
    result = await exited;
  } finally {
    clearTimeout(timer);
    options.signal.removeEventListener("abort", onAbort);
  }
  if (ended === "aborted") throw options.signal.reason;
  const output = (): string => {
    const lines = tail.lines;
    return lines.length === 0 ? " (no output)" : `; last output:\n${lines.join("\n")}`;
  };
  const fail = (what: string): DeployError => {
    log.write(`[atoll-deploy] provisioning ${options.name} failed: ${shown}: ${what}\n`);
    return new DeployError(
      "PROVISIONING_FAILED",
      `provisioning ${options.name} failed: ${shown}: ${what}${output()}`,
      { agent: options.name, step: command.step },
    );
  };
  if (ended === "timeout") {
    throw fail(`did not finish within the time limit of ${options.timeoutMs / 1000} s`);
  }
  if (result.error !== undefined) {
    const code = (result.error as NodeJS.ErrnoException).code;
    throw fail(code === "ENOENT" ? `${program} was not found in PATH` : result.error.message);
  }
  if (result.code !== 0) {
    throw fail(result.signal !== null ? `ended by ${result.signal}` : `exit code ${result.code}`);
  }
}

/** The commands of `steps` for the package in `dir`. */
async function commandsFor(
  steps: readonly ProvisioningStep[],
  options: ProvisionOptions,
): Promise<Command[]> {
  const { dir } = options;
  const commands: Command[] = [];
  for (const step of steps) {
    if (step === "npm") {
      commands.push({
        step,
        cwd: dir,
        // --git=git: a package's .npmrc must not name another program to run as git.
        argv: [
          options.npm ?? "npm",
          "ci",
          "--omit=dev",
          "--ignore-scripts",
          "--no-audit",
          "--no-fund",
          "--git=git",
        ],
      });
      continue;
    }
    const venv = path.join(dir, ".venv");
    commands.push({
      step,
      cwd: dir,
      argv: [options.python ?? "python3", "-I", "-m", "venv", venv],
    });
    const requirements = path.join(dir, "requirements.txt");
    if (namesRequirements(await readFile(requirements, "utf8"))) {
      commands.push({
        step,
        cwd: dir,
        argv: [
          path.join(venv, "bin", "python"),
          "-I",
          "-m",
          "pip",
          "install",
          "--disable-pip-version-check",
          "--no-input",
          "--only-binary=:all:",
          "-r",
          requirements,
        ],
      });
    }
  }
  return commands;
}

/**
 * Runs `steps` for the package in `options.dir`, in order, within `options.timeoutMs`.
 * @throws PROVISIONING_FAILED with the last lines of output, or the abort reason.
 */
export async function provision(
  steps: readonly ProvisioningStep[],
  options: ProvisionOptions,
): Promise<void> {
  if (steps.length === 0) return;
  const deadlineMs = Date.now() + options.timeoutMs;
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(options.env)) if (value !== undefined) env[key] = value;
  Object.assign(env, {
    npm_config_update_notifier: "false",
    PIP_DISABLE_PIP_VERSION_CHECK: "1",
    PIP_NO_INPUT: "1",
  });
  await mkdir(path.dirname(options.logPath), { recursive: true });
  const log = createWriteStream(options.logPath, { flags: "a", mode: 0o640 });
  const logOpened = once(log, "open");
  try {
    await logOpened;
    const commands = await commandsFor(steps, options);
    let current: ProvisioningStep | undefined;
    for (const command of commands) {
      if (command.step !== current) {
        current = command.step;
        options.onStep?.(current);
      }
      await runCommand(command, options, env, deadlineMs, log, new LastLines());
    }
    log.write(`[atoll-deploy] provisioning ${options.name} finished (${steps.join(", ")})\n`);
  } finally {
    log.end();
    await once(log, "close").catch(() => undefined);
  }
}
