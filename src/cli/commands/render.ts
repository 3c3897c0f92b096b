/**
 * `atoll-deploy render [name...]`: the Kubernetes manifests of agents (SPEC §11), built by the
 * pure `src/kube/render.ts` from the definitions of the agents directory. All or nothing: when
 * any agent asked for is unknown, invalid or refused, nothing is printed and the status is 1.
 */
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { AgentDefinition } from "../../config/agent-definition.ts";
import { isConfigError } from "../../config/config-error.ts";
import { discoverAgents } from "../../config/discovery.ts";
import { toYamlDocuments } from "../../kube/manifest-yaml.ts";
import { objectsOf, type RenderInput, renderAgents } from "../../kube/render.ts";
import type { RenderCommand } from "../command-spec.ts";
import { EXIT, type TextSink } from "../context.ts";
import { failureLine, noticeLine } from "../format.ts";
import type { Style } from "../style.ts";

export interface RenderIo {
  readonly cwd: string;
  readonly stdout: TextSink;
  readonly stderr: TextSink;
  /** The package version (default image `atoll-agent:<version>`). */
  readonly version: string;
  readonly errorStyle: Style;
}

/** Files of the agent's directory that the cluster will not see (only the definition ships). */
async function unshippedFiles(definition: AgentDefinition): Promise<string[]> {
  const own = path.basename(definition.configPath);
  const entries = await readdir(definition.dir).catch(() => []);
  return entries.filter((entry) => entry !== own && !entry.startsWith(".")).sort();
}

/** Runs `render`; resolves with the exit status. */
export async function renderCommand(command: RenderCommand, io: RenderIo): Promise<number> {
  const fail = (message: string): number => {
    io.stderr.write(`${failureLine(undefined, message, io.errorStyle)}\n`);
    return EXIT.FAILED;
  };
  const agentsDir = path.resolve(io.cwd, command.agentsDir);
  let found: Awaited<ReturnType<typeof discoverAgents>>;
  try {
    found = await discoverAgents(agentsDir);
  } catch (error) {
    if (isConfigError(error)) return fail(error.message);
    throw error;
  }
  const byName = new Map(
    found.agents.map((a) => [a.kind === "valid" ? a.definition.name : a.name, a] as const),
  );
  const problems: string[] = [];
  const chosen: AgentDefinition[] = [];
  if (command.names.length === 0) {
    for (const agent of found.agents) {
      if (agent.kind === "valid") chosen.push(agent.definition);
      else {
        io.stderr.write(
          `${noticeLine(agent.name, `skipped, its definition is invalid: ${agent.message}`, io.errorStyle)}\n`,
        );
      }
    }
  } else {
    for (const name of new Set(command.names)) {
      const agent = byName.get(name);
      if (agent === undefined) problems.push(`agent ${name} not found in ${agentsDir}`);
      else if (agent.kind === "invalid") problems.push(agent.message);
      else chosen.push(agent.definition);
    }
  }
  if (problems.length === 0 && chosen.length === 0) {
    problems.push(`no valid agent definitions in ${agentsDir}`);
  }
  const inputs: RenderInput[] = [];
  for (const definition of chosen) {
    try {
      inputs.push({ definition, text: await readFile(definition.configPath, "utf8") });
    } catch (error) {
      problems.push(
        `${definition.configPath}: cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      );
    }
  }
  const rendered = renderAgents(inputs, {
    namespace: command.namespace,
    image: command.image,
    version: io.version,
  });
  if (!rendered.ok) problems.push(...rendered.problems);
  if (problems.length > 0 || !rendered.ok) {
    for (const problem of problems)
      io.stderr.write(`${failureLine(undefined, problem, io.errorStyle)}\n`);
    return EXIT.FAILED;
  }
  for (const definition of chosen) {
    const extra = await unshippedFiles(definition);
    if (extra.length > 0) {
      const shown = extra.slice(0, 5).join(", ") + (extra.length > 5 ? ", ..." : "");
      io.stderr.write(
        `${noticeLine(definition.name, `only ${path.basename(definition.configPath)} is shipped to the cluster; ${shown} in ${definition.dir} must be in the image`, io.errorStyle)}\n`,
      );
    }
  }
  io.stdout.write(toYamlDocuments(rendered.agents.flatMap((agent) => objectsOf(agent))));
  return EXIT.OK;
}
