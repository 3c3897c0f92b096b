import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../../gen/google/rpc/status_pb.ts";
import { DeployError, type DeployErrorCode } from "../../src/core/errors.ts";
import {
  createErrorToStatus,
  decodeErrorInfo,
  deployErrorToStatus,
  grpcCodeFor,
  STATUS_DETAILS_KEY,
} from "../../src/rpc/error-mapping.ts";
import { MemoryLogger } from "./helpers.ts";

describe("error mapping", () => {
  it.each<[DeployErrorCode, status]>([
    ["AGENT_NOT_FOUND", status.NOT_FOUND],
    ["AGENT_CONFIG_INVALID", status.FAILED_PRECONDITION],
    ["MAX_AGENTS_REACHED", status.RESOURCE_EXHAUSTED],
    ["NO_FREE_PORT", status.RESOURCE_EXHAUSTED],
    ["PORT_UNAVAILABLE", status.FAILED_PRECONDITION],
    ["AGENT_START_FAILED", status.FAILED_PRECONDITION],
    ["AGENT_EXITED_DURING_START", status.FAILED_PRECONDITION],
    ["AGENT_START_TIMEOUT", status.DEADLINE_EXCEEDED],
    ["OPERATION_SUPERSEDED", status.ABORTED],
    ["INVALID_AGENT_NAME", status.INVALID_ARGUMENT],
    ["INVALID_ARGUMENT", status.INVALID_ARGUMENT],
    ["TOO_MANY_WATCHERS", status.RESOURCE_EXHAUSTED],
    ["WATCHER_TOO_SLOW", status.RESOURCE_EXHAUSTED],
    ["SERVER_SHUTTING_DOWN", status.UNAVAILABLE],
    ["UNAUTHENTICATED", status.UNAUTHENTICATED],
  ])("maps %s to status %i", (code, expected) => {
    expect(grpcCodeFor(code)).toBe(expected);
  });

  it("puts a google.rpc.Status with one ErrorInfo in grpc-status-details-bin", () => {
    const error = new DeployError("AGENT_EXITED_DURING_START", "agent a exited with code 3", {
      agent: "a",
      exit_code: "3",
    });
    const result = deployErrorToStatus(error);
    expect(result.code).toBe(status.FAILED_PRECONDITION);
    expect(result.details).toBe("agent a exited with code 3");
    const raw = result.metadata.get(STATUS_DETAILS_KEY)[0];
    expect(raw).toBeInstanceOf(Buffer);
    const decoded = fromBinary(StatusSchema, raw as Buffer);
    expect(decoded.code).toBe(status.FAILED_PRECONDITION);
    expect(decoded.message).toBe("agent a exited with code 3");
    expect(decoded.details).toHaveLength(1);
    expect(decoded.details[0]?.typeUrl).toBe("type.googleapis.com/google.rpc.ErrorInfo");
    const info = decodeErrorInfo(result.metadata);
    expect(info?.reason).toBe("AGENT_EXITED_DURING_START");
    expect(info?.domain).toBe("atoll.deploy");
    expect(info?.metadata).toEqual({ agent: "a", exit_code: "3" });
  });

  it("turns any other error into INTERNAL with a generic message and logs the cause", () => {
    const logger = new MemoryLogger();
    const toStatus = createErrorToStatus(logger);
    const cause = new Error("ENOSPC writing /home/op/.local/state/atoll-deploy/state.json");
    const result = toStatus(cause, { method: "/svc/M" });
    expect(result.code).toBe(status.INTERNAL);
    expect(result.details).toBe("internal error");
    expect(result.metadata.get(STATUS_DETAILS_KEY)).toEqual([]);
    expect(logger.lines).toEqual([
      {
        level: "error",
        msg: "unexpected error in RPC handler",
        fields: { method: "/svc/M", error: cause },
      },
    ]);
    // Non-Error throwables too.
    expect(toStatus("a string").code).toBe(status.INTERNAL);
  });

  it("decodes nothing from trailers without details, or with garbage", () => {
    expect(decodeErrorInfo(new Metadata())).toBeUndefined();
    const garbage = new Metadata();
    garbage.set(STATUS_DETAILS_KEY, Buffer.from([0xff, 0xff, 0xff]));
    expect(decodeErrorInfo(garbage)).toBeUndefined();
  });

  it("finds the ErrorInfo among other details", () => {
    const metadata = new Metadata();
    const detailsStatus = create(StatusSchema, {
      code: status.NOT_FOUND,
      message: "m",
      details: [
        anyPack(StatusSchema, create(StatusSchema, { message: "unrelated" })),
        anyPack(ErrorInfoSchema, create(ErrorInfoSchema, { reason: "R", domain: "d" })),
      ],
    });
    metadata.set(STATUS_DETAILS_KEY, Buffer.from(toBinary(StatusSchema, detailsStatus)));
    expect(decodeErrorInfo(metadata)?.reason).toBe("R");
  });
});
