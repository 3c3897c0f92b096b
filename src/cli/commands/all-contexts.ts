/**
 * `list --all-contexts` and `watch --all-contexts`: the same command against every context of
 * the contexts file at once, merged into one output with the context named on every row.
 *
 * Every context is asked in parallel, each under its own `--connect-timeout`, so one dead or
 * slow server delays the answer by at most that much and never hides the others. A context that
 * cannot be reached, refuses the call, or whose token/TLS files cannot be read is reported on
 * stderr (one line naming it) and makes the exit status 1; the others are still shown.
 */
import type { Agent } from "../../../gen/atoll/deployment/v1/agent_pb.ts";
import { AgentSchema } from "../../../gen/atoll/deployment/v1/agent_pb.ts";
import type { ClientContext } from "../client-contexts.ts";
import type { ClientOptions } from "../command-spec.ts";
import { openConnection } from "../connection.ts";
import { type CommandContext, describeFailure, EXIT, type Output } from "../context.ts";
import { withContextSettings } from "../context-resolution.ts";
import { failureLine, formatAgentTable, jsonDocument, messageJson } from "../format.ts";
import { watch } from "./watch.ts";

export interface AllContextsRun {
  readonly contexts: readonly ClientContext[];
  /** The command line's options (output format, timeouts); each context supplies its server. */
  readonly options: ClientOptions;
  readonly out: Output;
  readonly signal: AbortSignal;
  readonly now: () => number;
}

/**
 * Builds the CommandContext of every context, calls `body` with each in parallel, and closes
 * the clients. A context whose connection cannot be set up gets `body` skipped and its problem
 * reported on stderr at once, as `{ failed: problem }`.
 */
async function eachContext<T>(
  run: AllContextsRun,
  body: (ctx: CommandContext, context: ClientContext) => Promise<T>,
): Promise<
  ({ readonly context: ClientContext } & ({ readonly value: T } | { readonly failed: string }))[]
> {
  return Promise.all(
    run.contexts.map(async (context) => {
      const options = withContextSettings(run.options, context);
      let connection: Awaited<ReturnType<typeof openConnection>>;
      try {
        connection = await openConnection(options);
      } catch (error) {
        const failed = (error as Error).message;
        run.out.stderr.write(
          `${failureLine(undefined, `context ${context.name}: ${failed}`, run.out.errorStyle)}\n`,
        );
        return { context, failed };
      }
      // Messages name the context as well as its address.
      const named = { ...connection, address: `${connection.address} (context ${context.name})` };
      const client = named.newClient();
      try {
        const ctx: CommandContext = {
          client,
          connection: named,
          options,
          out: run.out,
          signal: run.signal,
          now: run.now,
        };
        return { context, value: await body(ctx, context) };
      } finally {
        client.close();
      }
    }),
  );
}

/** `list --all-contexts`; exit 0 when every context answered, else 1. */
export async function listAllContexts(run: AllContextsRun): Promise<number> {
  type Answer = { readonly agents: Agent[] } | { readonly error: unknown; readonly line: string };
  const results = await eachContext<Answer>(run, async (ctx) => {
    try {
      const response = await ctx.client.listAgents(
        {},
        {
          signal: ctx.signal,
          metadata: ctx.connection.metadata,
          deadlineMs: ctx.options.connectTimeoutMs,
        },
      );
      return { agents: response.agents };
    } catch (error) {
      const failure = describeFailure(error, {
        address: ctx.connection.address,
        phase: "connect",
        connectTimeoutMs: ctx.options.connectTimeoutMs,
        interrupted: ctx.signal.aborted,
        style: run.out.errorStyle,
      });
      return { error, line: failure.line };
    }
  });
  const rows: { context: string; agent: Agent }[] = [];
  const errors: { context: string; server: string; message: string }[] = [];
  for (const result of results) {
    const name = result.context.name;
    if ("failed" in result) {
      errors.push({ context: name, server: result.context.server, message: result.failed });
      continue;
    }
    const answer = result.value;
    if ("error" in answer) {
      // The line already names the context (through its address) or the server's refusal.
      const line = answer.line.includes(`(context ${name})`)
        ? answer.line
        : answer.line.replace(/^(\S+ )/, `$1context ${name}: `);
      errors.push({
        context: name,
        server: result.context.server,
        message: line.replace(/^\S+ /, ""),
      });
      run.out.stderr.write(`${line}\n`);
      continue;
    }
    for (const agent of answer.agents) rows.push({ context: name, agent });
  }
  if (run.out.json) {
    run.out.stdout.write(
      jsonDocument({
        contexts: results.map((result) => {
          const base = { context: result.context.name, server: result.context.server };
          if ("value" in result && "agents" in result.value) {
            return { ...base, agents: result.value.agents.map((a) => messageJson(AgentSchema, a)) };
          }
          const error = errors.find((e) => e.context === result.context.name);
          return { ...base, error: error?.message ?? "failed" };
        }),
      }),
    );
  } else {
    run.out.stdout.write(
      formatAgentTable(
        rows.map((r) => r.agent),
        { style: run.out.style, contexts: rows.map((r) => r.context) },
      ),
    );
  }
  return errors.length === 0 ? EXIT.OK : EXIT.FAILED;
}

/**
 * `watch --all-contexts`: one watch per context (each reconnecting on its own, as `watch`
 * does), lines `<time> <context> <name> <STATE>/<HEALTH> ...`. Runs until interrupted; exit 0
 * when every context's watch ended by the interrupt, else 1.
 */
export async function watchAllContexts(
  run: AllContextsRun,
  names: readonly string[],
  maxRetries: number,
): Promise<number> {
  const results = await eachContext(run, (ctx, context) =>
    watch(ctx, names, maxRetries, context.name),
  );
  let failed = false;
  for (const result of results) {
    if ("failed" in result || result.value !== EXIT.OK) {
      failed = true;
    }
  }
  return failed ? EXIT.FAILED : EXIT.OK;
}
