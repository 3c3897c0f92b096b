/**
 * Composition root of `atoll-agent` (SPEC §8): the only module here that reads `process.argv`
 * and the environment, installs signal handlers or calls `process.exit`.
 *
 * Exit status: 0 after a graceful stop (SIGTERM, SIGINT, `POST /shutdown`); 1 when the
 * definition cannot be loaded or the address cannot be bound; 2 on a usage error.
 */
import { homedir } from "node:os";
import { AGENT_USAGE, type AgentCliOptions, parseAgentArgs } from "./args.ts";
import { AgentDefinitionError, readAgentDefinition } from "./definition.ts";
import { createAgentHttpServer, type LogRecord } from "./http-server.ts";
import { createLlmClient } from "./llm-client.ts";
import { effectiveLlmSettings, loadOllamaConfig } from "./ollama-config.ts";

/** In-flight requests get this long after a stop request before their LLM call is aborted. */
const SHUTDOWN_GRACE_MS = 300;
/** Backstop: exit even if closing stalls, so a stop always takes well under a second. */
const SHUTDOWN_HARD_LIMIT_MS = 750;

function fail(message: string, exitCode: number): never {
  process.stderr.write(`atoll-agent: ${message}\n`);
  process.exit(exitCode);
}

function log(record: LogRecord): void {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

async function run(options: AgentCliOptions): Promise<void> {
  let definition: Awaited<ReturnType<typeof readAgentDefinition>>;
  try {
    definition = await readAgentDefinition(options.agentPath);
  } catch (error) {
    if (error instanceof AgentDefinitionError) {
      fail(`cannot load agent definition: ${error.message}`, 1);
    }
    throw error;
  }

  const ollama = await loadOllamaConfig(homedir(), process.env.OLLAMA_HOST);
  for (const warning of ollama.warnings) process.stderr.write(`atoll-agent: warning: ${warning}\n`);
  const settings = effectiveLlmSettings(definition.llm, ollama.config);
  const llm = createLlmClient(settings, definition.name);

  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) {
      // A second signal: do not wait for the grace period.
      process.exit(0);
    }
    stopping = true;
    log({ time: new Date().toISOString(), event: "stopping", reason });
    setTimeout(() => process.exit(0), SHUTDOWN_HARD_LIMIT_MS).unref();
    server.close(SHUTDOWN_GRACE_MS).then(
      () => {
        log({ time: new Date().toISOString(), event: "stopped" });
        process.exit(0);
      },
      (error: unknown) => {
        log({ time: new Date().toISOString(), event: "stop failed", error: String(error) });
        process.exit(1);
      },
    );
  };

  const server = createAgentHttpServer({
    agent: definition,
    llm,
    log,
    onShutdownRequest: () => stop("POST /shutdown"),
  });
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));

  let bound: { port: number; host: string };
  try {
    bound = await server.listen(options.port, options.host);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const where = `${options.host}:${options.port}`;
    if (code === "EADDRINUSE") fail(`cannot listen on ${where}: address already in use`, 1);
    if (code === "EADDRNOTAVAIL") fail(`cannot listen on ${where}: address not available`, 1);
    if (code === "EACCES") fail(`cannot listen on ${where}: permission denied`, 1);
    fail(`cannot listen on ${where}: ${(error as Error).message}`, 1);
  }
  log({
    time: new Date().toISOString(),
    event: "listening",
    host: bound.host,
    port: bound.port,
    name: definition.name,
    model: llm.model,
    pid: process.pid,
  });
}

const parsed = parseAgentArgs(process.argv.slice(2));
if (parsed.kind === "help") {
  process.stdout.write(`${AGENT_USAGE}\n`);
} else if (parsed.kind === "error") {
  process.stderr.write(`atoll-agent: ${parsed.message}\n${AGENT_USAGE}\n`);
  process.exit(2);
} else {
  run(parsed.options).catch((error: unknown) => {
    fail(`fatal: ${error instanceof Error ? error.message : String(error)}`, 1);
  });
}
