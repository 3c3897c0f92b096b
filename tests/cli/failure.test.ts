import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { describeFailure, EXIT } from "../../src/cli/context.ts";
import { PLAIN_STYLE } from "../../src/cli/style.ts";
import { RpcError } from "../../src/rpc/grpc-client.ts";

const at = {
  agent: "foo",
  address: "127.0.0.1:50051",
  phase: "operation" as const,
  connectTimeoutMs: 5000,
  interrupted: false,
  style: PLAIN_STYLE,
};

describe("describeFailure", () => {
  it("names the agent, the message and the ErrorInfo reason; exit 1", () => {
    const error = new RpcError(status.NOT_FOUND, "agent foo not found", {
      reason: "AGENT_NOT_FOUND",
    });
    expect(describeFailure(error, at)).toEqual({
      line: "✗ Agent foo: agent foo not found (AGENT_NOT_FOUND)",
      exitCode: EXIT.FAILED,
    });
  });

  it("falls back to the status name without ErrorInfo", () => {
    const error = new RpcError(status.INTERNAL, "internal error");
    expect(describeFailure(error, at).line).toBe("✗ Agent foo: internal error (INTERNAL)");
  });

  it("reports an unreachable server with its address and the cause; exit 3", () => {
    const error = new RpcError(
      status.UNAVAILABLE,
      "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:50051. Resolution note: ",
      { trailers: new Metadata() },
    );
    expect(describeFailure(error, at)).toEqual({
      line: "✗ cannot reach atoll-deploy at 127.0.0.1:50051: connect ECONNREFUSED 127.0.0.1:50051",
      exitCode: EXIT.UNREACHABLE,
    });
  });

  it("takes a deadline while connecting as unreachable, and one during an operation as a failure", () => {
    const error = new RpcError(status.DEADLINE_EXCEEDED, "Deadline exceeded");
    expect(describeFailure(error, { ...at, phase: "connect" })).toEqual({
      line: "✗ cannot reach atoll-deploy at 127.0.0.1:50051: no answer within 5 s",
      exitCode: EXIT.UNREACHABLE,
    });
    expect(describeFailure(error, at).exitCode).toBe(EXIT.FAILED);
  });

  it("keeps the start timeout of the server as the agent's failure", () => {
    const error = new RpcError(status.DEADLINE_EXCEEDED, "agent foo was not healthy within 30 s", {
      reason: "AGENT_START_TIMEOUT",
    });
    expect(describeFailure(error, { ...at, phase: "connect" })).toEqual({
      line: "✗ Agent foo: agent foo was not healthy within 30 s (AGENT_START_TIMEOUT)",
      exitCode: EXIT.FAILED,
    });
  });

  it("reports a draining server as unavailable with its reason", () => {
    const error = new RpcError(status.UNAVAILABLE, "the server is shutting down", {
      reason: "SERVER_SHUTTING_DOWN",
    });
    expect(describeFailure(error, at)).toEqual({
      line: "✗ Agent foo: the server is shutting down (SERVER_SHUTTING_DOWN)",
      exitCode: EXIT.UNREACHABLE,
    });
  });

  it("reports an interrupt with status 130", () => {
    const error = new RpcError(status.CANCELLED, "Cancelled on client");
    expect(describeFailure(error, { ...at, interrupted: true }).exitCode).toBe(EXIT.INTERRUPTED);
  });
});
