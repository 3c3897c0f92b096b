/**
 * `deploy`, `undeploy` and `restart`, which share one shape: reach the server (GetStatus under
 * the connect timeout, so an unreachable server never hangs), run the operation with a progress
 * indicator, print the success line or the JSON response.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { type Agent, AgentState } from "../../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  DeployResponseSchema,
  RestartResponseSchema,
  UndeployResponseSchema,
} from "../../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import type { ClientCallOptions } from "../../rpc/grpc-client.ts";
import { type CommandContext, callOptions, EXIT, reportFailure } from "../context.ts";
import {
  deployedLine,
  formatReason,
  jsonDocument,
  messageJson,
  noticeLine,
  restartedLine,
  stateName,
  stoppedLine,
} from "../format.ts";
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
function isRunning(state: number): boolean {
  return state === AgentState.RUNNING;
}

/** Undeploy should leave the agent without a process (stopping, or never started). */
function isNotLive(state: number): boolean {
  return (
    state !== AgentState.STARTING && state !== AgentState.RUNNING && state !== AgentState.BACKOFF
  );
}

/** What tells one agent command from another. */
interface AgentCommandSpec<Desc extends DescMessage> {
  /** Progress verb, e.g. `Deploying`. */
  readonly verb: string;
  readonly responseSchema: Desc;
  readonly rpc: (
    ctx: CommandContext,
    name: string,
    options: ClientCallOptions,
  ) => Promise<MessageShape<Desc> & { agent?: Agent | undefined }>;
  readonly successLine: (agent: Agent, style: Style) => string;
  readonly settled: (state: number) => boolean;
}

/** An agent command: `(ctx, agent, timeoutMs)` → exit status. */
export type AgentCommand = (
  ctx: CommandContext,
  agent: string,
  timeoutMs: number | undefined,
) => Promise<number>;

function agentCommand<Desc extends DescMessage>(spec: AgentCommandSpec<Desc>): AgentCommand {
  return (ctx, agent, timeoutMs) =>
    runAgentOperation(ctx, {
      agent,
      timeoutMs,
      progressText: `${spec.verb} ${agent}`,
      responseSchema: spec.responseSchema,
      call: (options) => spec.rpc(ctx, agent, options),
      successLine: spec.successLine,
      settled: spec.settled,
    });
}

/** `deploy <name>`: starts the agent and waits until it is running and healthy. */
export const deploy: AgentCommand = agentCommand({
  verb: "Deploying",
  responseSchema: DeployResponseSchema,
  rpc: (ctx, name, options) => ctx.client.deploy({ name }, options),
  successLine: deployedLine,
  settled: isRunning,
});

/** `restart <name>`: stops the agent if it runs, starts it, waits like deploy. */
export const restart: AgentCommand = agentCommand({
  verb: "Restarting",
  responseSchema: RestartResponseSchema,
  rpc: (ctx, name, options) => ctx.client.restart({ name }, options),
  successLine: restartedLine,
  settled: isRunning,
});

/** `undeploy <name>`: stops the agent gracefully and waits until it has stopped. */
export const undeploy: AgentCommand = agentCommand({
  verb: "Stopping",
  responseSchema: UndeployResponseSchema,
  rpc: (ctx, name, options) => ctx.client.undeploy({ name }, options),
  successLine: stoppedLine,
  // Undeploying an agent that never ran (DISCOVERED, FAILED, INVALID) is fine as it is.
  settled: isNotLive,
});
