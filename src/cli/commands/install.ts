/**
 * `install <dir|archive> [--force] [--start]` and `remove <name>` (SPEC §12). `install` packs a
 * directory into a temporary `.tar.gz` (or takes an archive as it is), hashes it, reaches the
 * server, uploads it in chunks with a progress bar, then waits with a spinner while the server
 * checks and provisions it.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AgentState } from "../../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  type InstallAgentRequestSchema,
  InstallAgentResponseSchema,
  InstallOutcome,
  RemoveAgentResponseSchema,
} from "../../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { parseAgentDefinition } from "../../config/parse-definition.ts";
import { PackError, packDirectory } from "../../packages/pack-directory.ts";
import type { ClientCommand } from "../command-line.ts";
import { type CommandContext, callOptions, EXIT, reportFailure } from "../context.ts";
import {
  failureLine,
  formatBytes,
  installedLine,
  jsonDocument,
  messageJson,
  noticeLine,
  removedLine,
} from "../format.ts";
import { startProgress, startProgressBar } from "../progress.ts";

type InstallCommand = Extract<ClientCommand, { readonly name: "install" }>;

/** Bytes per InstallAgent message: well under the 4 MiB message limit, few messages per MiB. */
const CHUNK_BYTES = 256 * 1024;

/** A local problem with the package: exit status 2 with one line, like an unusable file. */
class LocalPackageError extends Error {}

interface PreparedPackage {
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
  /** The agent's name when the CLI can tell (a directory's definition); else undefined. */
  readonly name: string | undefined;
  readonly cleanup: () => Promise<void>;
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The agent's name from a directory's definition, as the server will read it; undefined if unsure. */
async function localName(dir: string): Promise<string | undefined> {
  for (const file of ["agent.toml", "agent.json"]) {
    const text = await readFile(path.join(dir, file), "utf8").catch(() => undefined);
    if (text === undefined) continue;
    const parsed = parseAgentDefinition(path.join(dir, file), text, path.basename(dir));
    return parsed.ok ? parsed.definition.name : undefined;
  }
  return undefined;
}

/** The archive to upload: `target` itself, or a directory packed into a temporary file. */
async function prepare(target: string): Promise<PreparedPackage> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new LocalPackageError(`cannot read ${target}: ${code}`);
  }
  if (info.isFile()) {
    return {
      file: target,
      bytes: info.size,
      sha256: await sha256Of(target),
      name: undefined,
      cleanup: async () => {},
    };
  }
  if (!info.isDirectory())
    throw new LocalPackageError(`${target} is not a directory or an archive`);
  const temp = await mkdtemp(path.join(os.tmpdir(), "atoll-pack-"));
  const cleanup = () => rm(temp, { recursive: true, force: true });
  try {
    const file = path.join(temp, `${path.basename(path.resolve(target))}.tar.gz`);
    await packDirectory(target, file);
    return {
      file,
      bytes: (await stat(file)).size,
      sha256: await sha256Of(file),
      name: await localName(path.resolve(target)),
      cleanup,
    };
  } catch (error) {
    await cleanup();
    if (error instanceof PackError) throw new LocalPackageError(error.message);
    throw error;
  }
}

/** The request stream: the header, then the archive in chunks, reporting bytes handed over. */
async function* requestsFor(
  prepared: PreparedPackage,
  command: InstallCommand,
  onSent: (bytes: number) => void,
): AsyncGenerator<MessageInitShape<typeof InstallAgentRequestSchema>> {
  yield {
    payload: {
      case: "header",
      value: {
        sha256: prepared.sha256,
        force: command.force,
        start: command.start,
        sizeBytes: BigInt(prepared.bytes),
      },
    },
  };
  let sent = 0;
  for await (const chunk of createReadStream(prepared.file, { highWaterMark: CHUNK_BYTES })) {
    const bytes = chunk as Buffer;
    yield { payload: { case: "chunk", value: bytes } };
    sent += bytes.length;
    onSent(sent);
  }
}

const OUTCOME_WORDS: Readonly<Record<number, "installed" | "replaced" | "already installed">> = {
  [InstallOutcome.INSTALLED]: "installed",
  [InstallOutcome.REPLACED]: "replaced",
  [InstallOutcome.ALREADY_INSTALLED]: "already installed",
};

/** `install <dir|archive> [--force] [--start]`; returns the exit status. */
export async function install(ctx: CommandContext, command: InstallCommand): Promise<number> {
  let prepared: PreparedPackage;
  try {
    prepared = await prepare(command.path);
  } catch (error) {
    if (!(error instanceof LocalPackageError)) throw error;
    ctx.out.stderr.write(`${failureLine(undefined, error.message, ctx.out.errorStyle)}\n`);
    return EXIT.USAGE;
  }
  try {
    const name = prepared.name;
    try {
      await ctx.client.listAgents({}, callOptions(ctx, ctx.options.connectTimeoutMs));
    } catch (error) {
      return reportFailure(ctx, error, name, "connect");
    }
    const drawing = ctx.out.progress && !ctx.out.json;
    const what = name ?? path.basename(command.path);
    const bar = startProgressBar(
      ctx.out.stderr,
      `Uploading ${what}`,
      prepared.bytes,
      drawing,
      formatBytes,
    );
    let spinner: { stop(): void } | undefined;
    let response: Awaited<ReturnType<typeof ctx.client.installAgent>>;
    try {
      response = await ctx.client.installAgent(
        requestsFor(prepared, command, (sent) => {
          bar.update(sent);
          if (sent === prepared.bytes) {
            bar.stop();
            spinner = startProgress(
              ctx.out.stderr,
              `Installing ${what} (checking, unpacking, provisioning)`,
              drawing,
              ctx.now,
            );
          }
        }),
        callOptions(ctx, command.timeoutMs),
      );
    } catch (error) {
      return reportFailure(ctx, error, name, "operation");
    } finally {
      bar.stop();
      spinner?.stop();
    }
    const agent = response.agent;
    if (agent === undefined) {
      return reportFailure(
        ctx,
        new Error("the server answered without the agent"),
        name,
        "operation",
      );
    }
    if (ctx.out.json) {
      ctx.out.stdout.write(jsonDocument(messageJson(InstallAgentResponseSchema, response)));
    } else {
      const outcome = OUTCOME_WORDS[response.outcome] ?? "installed";
      ctx.out.stdout.write(`${installedLine(agent, outcome, ctx.out.style)}\n`);
    }
    const runsOld =
      response.outcome === InstallOutcome.REPLACED &&
      !command.start &&
      agent.state === AgentState.RUNNING;
    if (runsOld) {
      ctx.out.stderr.write(
        `${noticeLine(agent.name, "keeps running its previous package until it is restarted", ctx.out.errorStyle)}\n`,
      );
    }
    return EXIT.OK;
  } finally {
    await prepared.cleanup();
  }
}

/** `remove <name>`: stops the installed agent and deletes its package. */
export async function remove(
  ctx: CommandContext,
  name: string,
  timeoutMs: number | undefined,
): Promise<number> {
  try {
    await ctx.client.getStatus({ name }, callOptions(ctx, ctx.options.connectTimeoutMs));
  } catch (error) {
    return reportFailure(ctx, error, name, "connect");
  }
  const progress = startProgress(
    ctx.out.stderr,
    `Removing ${name}`,
    ctx.out.progress && !ctx.out.json,
    ctx.now,
  );
  let response: Awaited<ReturnType<typeof ctx.client.removeAgent>>;
  try {
    response = await ctx.client.removeAgent({ name }, callOptions(ctx, timeoutMs));
  } catch (error) {
    return reportFailure(ctx, error, name, "operation");
  } finally {
    progress.stop();
  }
  if (ctx.out.json) {
    ctx.out.stdout.write(jsonDocument(messageJson(RemoveAgentResponseSchema, response)));
  } else if (response.agent !== undefined) {
    ctx.out.stdout.write(`${removedLine(response.agent, ctx.out.style)}\n`);
  }
  return EXIT.OK;
}
