/**
 * The shared shape of `deploy`, `undeploy` and `restart`: reach the server (GetStatus under the
 * connect timeout, so an unreachable server never hangs), run the operation with a progress
 * indicator, print the success line or the JSON response.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { type Agent, AgentState } from "../../../gen/atoll/deployment/v1/agent_pb.ts";
import type { ClientCallOptions } from "../../rpc/grpc-client.ts";
import { type CommandContext, callOptions, EXIT, reportFailure } from "../context.ts";
import { formatReason, jsonDocument, messageJson, noticeLine, stateName } from "../format.ts";
import { startProgress } from "../progress.ts";
import type { Style } from "../style.ts";

export interface AgentOperation<Desc extends DescMessage> {
  /** The agent's name as given. */
  readonly agent: string;
  /** Deadline of the operation in milliseconds; none when undefined. */
  readonly timeoutMs: number | undefined;
  /** Progress text, e.g. `Deploying greeter`. */
  readonly progressText: string;
  /** The response schema, for `--json`. */
  readonly responseSchema: Desc;
  /** Calls the RPC. */
  readonly call: (
    options: ClientCallOptions,
  ) => Promise<MessageShape<Desc> & { agent?: Agent | undefined }>;
  /** The human success line for the resulting agent. */
  readonly successLine: (agent: Agent, style: Style) => string;
  /** True for the states the operation should leave the agent in; others get a notice. */
  readonly settled: (state: number) => boolean;
}

/** Runs one agent operation; returns the exit status. */
export async function runAgentOperation<Desc extends DescMessage>(
  ctx: CommandContext,
  operation: AgentOperation<Desc>,
): Promise<number> {
  const { agent: name } = operation;
  try {
    await ctx.client.getStatus({ name }, callOptions(ctx, ctx.options.connectTimeoutMs));
  } catch (error) {
    return reportFailure(ctx, error, name, "connect");
  }
  const progress = startProgress(
    ctx.out.stderr,
    operation.progressText,
    ctx.out.progress && !ctx.out.json,
    ctx.now,
  );
  let response: MessageShape<Desc> & { agent?: Agent | undefined };
  try {
    response = await operation.call(callOptions(ctx, operation.timeoutMs));
  } catch (error) {
    return reportFailure(ctx, error, name, "operation");
  } finally {
    progress.stop();
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
    ctx.out.stdout.write(jsonDocument(messageJson(operation.responseSchema, response)));
  } else {
    ctx.out.stdout.write(`${operation.successLine(agent, ctx.out.style)}\n`);
  }
  if (!operation.settled(agent.state)) {
    // Idempotent calls answer OK with an agent that is live but not (yet) in the wanted state.
    const reason = formatReason(agent);
    const note = `is ${stateName(agent.state)}${reason === "" ? "" : ` (${reason})`}`;
    ctx.out.stderr.write(`${noticeLine(agent.name, note, ctx.out.errorStyle)}\n`);
  }
  return EXIT.OK;
}

/** Deploy and Restart should leave the agent RUNNING. */
export function isRunning(state: number): boolean {
  return state === AgentState.RUNNING;
}

/** Undeploy should leave the agent without a process (stopping, or never started). */
export function isNotLive(state: number): boolean {
  return (
    state !== AgentState.STARTING && state !== AgentState.RUNNING && state !== AgentState.BACKOFF
  );
}
