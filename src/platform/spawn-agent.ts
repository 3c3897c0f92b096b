/**
 * Spawning an agent process (SPEC §4): no shell, its own process group, output into its FIFO,
 * read by the output keeper (docs/platform.md, "Agent output"), and not tied to the daemon's
 * life, so a daemon crash leaves the agent running for adoption by the next daemon.
 */

import { accessSync, closeSync, constants, fstatSync, openSync, readSync, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { execa } from "execa";
import type { ExitRecord } from "../core/agent-state.ts";
import { DeployError } from "../core/errors.ts";
import type { AgentCgroup } from "./cgroups.ts";
import { openLogForAppend } from "./log-file.ts";
import { readProcessStartTime } from "./proc-info.ts";

/**
 * How an agent process ended: exit code or signal name, and when the daemon saw it (ms since the
 * epoch). The core's `ExitRecord`, so the supervisor consumes it as is.
 */
export type ExitFacts = ExitRecord;

/** A running agent process. */
export interface SpawnedAgent {
  readonly pid: number;
  /** Process group id: equal to `pid`, the agent leads its own group. */
  readonly pgid: number;
  /**
   * Start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`), read right after the
   * spawn; with `pid` it identifies the process after a daemon restart. Undefined only when
   * `/proc` could not be read.
   */
  readonly startTimeTicks: number | undefined;
  /** The argv[0] actually executed, after PATH lookup. */
  readonly executable: string;
  /**
   * The agent's argv as executed: `executable`, then its arguments (not the cgroup trampoline
   * before it). What `/proc/<pid>/cmdline` ends with once it runs.
   */
  readonly commandLine: readonly string[];
  /** Resolves as soon as the process exits (never rejects). */
  readonly exited: Promise<ExitFacts>;
}

/** Options of {@link spawnAgent}. */
export interface SpawnAgentOptions {
  /** Program and arguments; argv[0] is looked up in `env.PATH` (else the daemon's PATH) when it has no slash. Never run through a shell. */
  readonly argv: readonly string[];
  /** Working directory of the agent; relative paths in argv[0] resolve against it. */
  readonly cwd: string;
  /**
   * The agent's whole environment (nothing is inherited besides: the caller builds it from the
   * daemon's, see `buildAgentEnv`, and merging `process.env` again per spawn is costly).
   */
  readonly env: Readonly<Record<string, string>>;
  /** Where stdout and stderr go. */
  readonly output: AgentOutput;
  /**
   * The cgroup to run the agent in (a new, empty one): the agent is started through its
   * trampoline (`/bin/sh` writes its own pid into the cgroup, then execs the agent), so that it is
   * a member before it can fork. Its pid, group and command line are the agent's.
   */
  readonly cgroup?: AgentCgroup | undefined;
}

/**
 * Where an agent's stdout and stderr go:
 * - `fifo`: the agent's FIFO (made by the output keeper's daemon side, read by the keeper). The
 *   agent also gets the FIFO read-write as fd 3, so that its writes never fail with EPIPE while
 *   no keeper reads (they block once the pipe's 64 KiB are full instead).
 * - `file`: a file appended to through an O_APPEND descriptor, created (with its directory) if
 *   missing; nothing bounds its size (for callers without a keeper).
 */
export type AgentOutput = { readonly fifo: string } | { readonly file: string };

/** Why an agent could not be spawned. */
export type SpawnFailureReason = "EXECUTABLE_NOT_FOUND" | "PERMISSION_DENIED" | "SPAWN_FAILED";

/**
 * The agent process could not be started. A DeployError with code (and `reason`)
 * `AGENT_START_FAILED`, so the RPC layer maps it without knowing this class; `failure` doubles as
 * the agent's `state_reason`.
 */
export class SpawnError extends DeployError {
  readonly failure: SpawnFailureReason;
  /** The command as given (argv[0]). */
  readonly command: string;

  constructor(
    reason: SpawnFailureReason,
    command: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super("AGENT_START_FAILED", message, { reason, command }, options);
    this.failure = reason;
    this.command = command;
  }
}

/** True when `path` is a regular file this process may execute; "missing" / "denied" otherwise. */
function checkExecutable(path: string): "ok" | "missing" | "denied" {
  try {
    if (!statSync(path).isFile()) return "denied"; // execve of a directory fails with EACCES.
    accessSync(path, constants.X_OK);
    return "ok";
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EACCES" ? "denied" : "missing";
  }
}

/**
 * The interpreter a `#!` script names (its first word), when `path` is one; undefined for a
 * binary or an unreadable file. Checked before the spawn, so that a missing interpreter is
 * EXECUTABLE_NOT_FOUND however the agent is started (the cgroup trampoline's exec would only
 * exit 127).
 */
function shebangInterpreter(path: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const head = Buffer.alloc(256);
    const bytes = readSync(fd, head, 0, head.length, 0);
    const text = head.subarray(0, bytes).toString("latin1");
    if (!text.startsWith("#!")) return undefined;
    const line = text.slice(2).split("\n")[0] ?? "";
    return line.trim().split(/[ \t]+/)[0] || undefined;
  } catch {
    return undefined; // Unreadable: execve reports it.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The executable `path`, checked with its `#!` interpreter, if any. */
function checked(path: string, command: string): string {
  const interpreter = shebangInterpreter(path);
  if (
    interpreter !== undefined &&
    isAbsolute(interpreter) &&
    checkExecutable(interpreter) !== "ok"
  ) {
    throw new SpawnError(
      "EXECUTABLE_NOT_FOUND",
      command,
      `executable not found: ${path} (its interpreter ${interpreter} is missing or not executable)`,
    );
  }
  return path;
}

/**
 * Resolves argv[0] the way execvp would, but against the agent's own PATH and cwd:
 * a name without a slash is searched in `pathVariable` (an empty entry means the cwd),
 * a relative path with a slash resolves against `cwd`.
 * @throws SpawnError `EXECUTABLE_NOT_FOUND` or `PERMISSION_DENIED`.
 */
export function resolveExecutable(command: string, cwd: string, pathVariable: string): string {
  if (command === "") {
    throw new SpawnError("EXECUTABLE_NOT_FOUND", command, "the agent command is empty");
  }
  if (command.includes("/")) {
    const path = isAbsolute(command) ? command : resolve(cwd, command);
    const verdict = checkExecutable(path);
    if (verdict === "ok") return checked(path, command);
    throw verdict === "missing"
      ? new SpawnError("EXECUTABLE_NOT_FOUND", command, `executable not found: ${path}`)
      : new SpawnError("PERMISSION_DENIED", command, `permission denied executing ${path}`);
  }
  let denied: string | undefined;
  for (const dir of pathVariable.split(delimiter)) {
    const path = resolve(cwd, join(dir === "" ? "." : dir, command));
    const verdict = checkExecutable(path);
    if (verdict === "ok") return checked(path, command);
    // Like execvp: a non-executable match is reported only when no later entry is executable.
    if (verdict === "denied") denied ??= path;
  }
  if (denied !== undefined) {
    throw new SpawnError("PERMISSION_DENIED", command, `permission denied executing ${denied}`);
  }
  throw new SpawnError(
    "EXECUTABLE_NOT_FOUND",
    command,
    `executable not found: '${command}' is not in PATH (${pathVariable})`,
  );
}

function assertDirectory(cwd: string, command: string): void {
  let isDirectory = false;
  try {
    isDirectory = statSync(cwd).isDirectory();
  } catch {
    // Reported below: Node would otherwise blame the command with a misleading ENOENT.
  }
  if (!isDirectory) {
    throw new SpawnError(
      "SPAWN_FAILED",
      command,
      `cannot start '${command}': working directory ${cwd} does not exist`,
    );
  }
}

function failureFromCode(
  code: string | undefined,
  command: string,
  executable: string,
): SpawnError {
  switch (code) {
    case "ENOENT":
      // The file existed a moment ago, so this is a vanished file or a missing #! interpreter.
      return new SpawnError(
        "EXECUTABLE_NOT_FOUND",
        command,
        `executable not found: ${executable} (or its interpreter)`,
      );
    case "EACCES":
    case "EPERM":
      return new SpawnError(
        "PERMISSION_DENIED",
        command,
        `permission denied executing ${executable}`,
      );
    default:
      return new SpawnError(
        "SPAWN_FAILED",
        command,
        `cannot start ${executable}: ${code ?? "unknown error"}`,
      );
  }
}

/** The agent's descriptors: fd 1 and 2, and for a FIFO the read-write fd 3. */
interface OutputFds {
  readonly out: number;
  readonly extra: number | undefined;
}

/**
 * Opens the agent's output. For a FIFO: read-write first, which never blocks on Linux, then
 * write-only, which does not block either since a reader (the first descriptor) exists.
 */
function openOutput(output: AgentOutput): OutputFds {
  if ("file" in output) return { out: openLogForAppend(output.file), extra: undefined };
  // Never through a symbolic link (ELOOP): one swapped in for the FIFO could lead elsewhere.
  const extra = openSync(output.fifo, constants.O_RDWR | constants.O_NOFOLLOW);
  try {
    if (!fstatSync(extra).isFIFO()) throw new Error(`${output.fifo} is not a FIFO`);
    return { out: openSync(output.fifo, constants.O_WRONLY | constants.O_NOFOLLOW), extra };
  } catch (error) {
    closeSync(extra);
    throw error;
  }
}

/** execa with the agent settings; always closes the daemon's copies of the descriptors. */
function startWithOutput(
  executable: string,
  args: readonly string[],
  options: SpawnAgentOptions,
  fds: OutputFds,
) {
  try {
    // A bare fd number is handed to child_process.spawn as is ("native" in execa's
    // lib/stdio/type.js): the child inherits the descriptor itself. execa's types only spell
    // out 1 and 2 for these positions, hence the casts.
    const stdio =
      fds.extra === undefined
        ? (["ignore", fds.out as 1, fds.out as 2] as const)
        : (["ignore", fds.out as 1, fds.out as 2, fds.extra as 3] as const);
    return execa(executable, args, {
      cwd: options.cwd,
      env: options.env,
      extendEnv: false,
      shell: false,
      detached: true,
      cleanup: false,
      stdio,
      reject: false,
      buffer: false,
      stripFinalNewline: false,
    });
  } finally {
    // spawn() has dup'ed the descriptors into the child (or failed): the daemon's copies would
    // only keep the file or pipe open. Node opens files with O_CLOEXEC, so no other child
    // inherited them.
    closeSync(fds.out);
    if (fds.extra !== undefined) closeSync(fds.extra);
  }
}

/**
 * Starts an agent process: never through a shell, detached into its own process group (so the
 * group can be signalled as a whole), not killed when the daemon exits (`cleanup: false`, so agents
 * survive a daemon crash and are adopted), stdin from /dev/null, stdout and stderr the same
 * descriptor of `output` (the daemon closes its copies at once; the agent's output never depends
 * on the daemon: the keeper reads the FIFO and outlives the daemon).
 *
 * Resolves once the process exists, with its pid and start time; the exit is reported by `exited`.
 * @throws SpawnError `EXECUTABLE_NOT_FOUND` (missing command, or its interpreter),
 *   `PERMISSION_DENIED` (not executable), or `SPAWN_FAILED` (missing cwd, unopenable FIFO or log
 *   file, out of processes...); its message names the command.
 */
export async function spawnAgent(options: SpawnAgentOptions): Promise<SpawnedAgent> {
  const [command, ...args] = options.argv;
  if (command === undefined) {
    throw new SpawnError("EXECUTABLE_NOT_FOUND", "", "the agent command is empty");
  }
  assertDirectory(options.cwd, command);
  const executable = resolveExecutable(
    command,
    options.cwd,
    options.env.PATH ?? process.env.PATH ?? "",
  );

  let fds: OutputFds;
  try {
    fds = openOutput(options.output);
  } catch (error) {
    const target = "fifo" in options.output ? options.output.fifo : options.output.file;
    throw new SpawnError(
      "SPAWN_FAILED",
      command,
      `cannot start '${command}': cannot open its output ${target}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      { cause: error },
    );
  }

  // In a cgroup: the trampoline joins it, then execs the agent with the same argv.
  const trampoline = options.cgroup?.trampoline();
  const subprocess =
    trampoline === undefined
      ? startWithOutput(executable, args, options, fds)
      : startWithOutput(
          trampoline[0] ?? "/bin/sh",
          [...trampoline.slice(1), executable, ...args],
          options,
          fds,
        );
  const pid = subprocess.pid;
  if (pid === undefined) {
    // Spawn failed; execa reports the errno through its (non-rejecting) result.
    const result = await subprocess;
    throw failureFromCode(result.code, command, executable);
  }
  // Read now, synchronously: even if the child has exited already, Node has not reaped it yet.
  const startTimeTicks = readProcessStartTime(pid);

  const exited = new Promise<ExitFacts>((resolveExit) => {
    let settled = false;
    const settle = (code: number | null, signal: string | null): void => {
      if (settled) return;
      settled = true;
      resolveExit({ code, signal, atMs: Date.now() });
    };
    subprocess.once("exit", (code, signal) => settle(code, signal));
    // Fallback for the exit event being missed in some execa path; execa never rejects here.
    subprocess.then(
      (result) => settle(result.exitCode ?? null, result.signal ?? null),
      () => settle(null, null),
    );
  });

  return { pid, pgid: pid, startTimeTicks, executable, commandLine: [executable, ...args], exited };
}
