import { describe, expect, it } from "vitest";
import { startPatch, startProgress, startTimedOut } from "../../src/kube/agent-start.ts";
import {
  type ClusterPod,
  type ContainerStatus,
  clusterFacts,
  RESTARTED_AT_ANNOTATION,
  STOP_MESSAGE_ANNOTATION,
  STOP_REASON_ANNOTATION,
} from "../../src/kube/cluster-state.ts";
import { DEFINITION_SHA_ANNOTATION } from "../../src/kube/object-names.ts";
import { CONTAINER_NAME } from "../../src/kube/render-pod.ts";

const SHA = "a".repeat(64);
const deployment = { metadata: { name: "atoll-alpha" }, spec: { replicas: 1 } };

/** A pod of the agent with its container in `state`. */
function pod(
  container: ContainerStatus,
  annotations: Record<string, string> = { [DEFINITION_SHA_ANNOTATION]: SHA },
): ClusterPod {
  return {
    metadata: { name: "atoll-alpha-1", annotations, creationTimestamp: "2025-01-01T00:00:00Z" },
    spec: { nodeName: "node-1" },
    status: { phase: "Running", containerStatuses: [container] },
  };
}

const ready = {
  name: CONTAINER_NAME,
  ready: true,
  started: true,
  restartCount: 0,
  state: { running: { startedAt: "2025-01-01T00:00:01Z" } },
};

describe("startProgress", () => {
  it("waits while only a pod of another definition or restart exists", () => {
    const other = clusterFacts(deployment, [pod(ready, { [DEFINITION_SHA_ANNOTATION]: "b" })]);
    expect(startProgress("alpha", other, 0, SHA, undefined)).toEqual({ kind: "waiting" });
    const earlier = clusterFacts(deployment, [pod(ready)]);
    expect(startProgress("alpha", earlier, 0, SHA, "2025-01-02T00:00:00Z")).toEqual({
      kind: "waiting",
    });
  });

  it("is ready once the start's pod runs and is ready", () => {
    const facts = clusterFacts(deployment, [pod(ready)]);
    expect(startProgress("alpha", facts, 0, SHA, undefined)).toEqual({ kind: "ready" });
  });

  it("fails at once, asking for a stop, when the image cannot be pulled", () => {
    const facts = clusterFacts(deployment, [
      pod({
        name: CONTAINER_NAME,
        state: { waiting: { reason: "ErrImagePull", message: "nope" } },
      }),
    ]);
    const progress = startProgress("alpha", facts, 0, SHA, undefined);
    expect(progress).toMatchObject({ kind: "failed", stopReason: "IMAGE_PULL_FAILED" });
    expect(progress.kind === "failed" && progress.error.code).toBe("AGENT_START_FAILED");
  });

  it("fails when the container exited during the start, but not for restarts from before it", () => {
    const crashed = pod({
      name: CONTAINER_NAME,
      restartCount: 2,
      state: { waiting: { reason: "ContainerCreating" } },
      lastState: { terminated: { exitCode: 3, finishedAt: "2025-01-01T00:00:02Z" } },
    });
    const facts = clusterFacts(deployment, [crashed]);
    const progress = startProgress("alpha", facts, 0, SHA, undefined);
    expect(progress.kind === "failed" && progress.error.code).toBe("AGENT_EXITED_DURING_START");
    expect(progress.kind === "failed" && progress.error.message).toContain("exit code 3");
    expect(startProgress("alpha", facts, 2, SHA, undefined)).toEqual({ kind: "waiting" });
  });
});

describe("startPatch", () => {
  it("clears a recorded stop and sets restartedAt for a restart", () => {
    expect(startPatch({}, undefined)).toBeUndefined();
    expect(startPatch({ [STOP_REASON_ANNOTATION]: "CRASH_LOOP" }, "2025-01-02T00:00:00Z")).toEqual({
      metadata: {
        annotations: { [STOP_REASON_ANNOTATION]: null, [STOP_MESSAGE_ANNOTATION]: null },
      },
      spec: {
        template: {
          metadata: { annotations: { [RESTARTED_AT_ANNOTATION]: "2025-01-02T00:00:00Z" } },
        },
      },
    });
  });
});

describe("startTimedOut", () => {
  it("names an unschedulable pod, else the start timeout", () => {
    const unschedulable = clusterFacts(deployment, [
      {
        metadata: { name: "atoll-alpha-1", annotations: { [DEFINITION_SHA_ANNOTATION]: SHA } },
        status: {
          phase: "Pending",
          conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable" }],
        },
      },
    ]);
    expect(startTimedOut("alpha", unschedulable)).toMatchObject({
      stopReason: "UNSCHEDULABLE",
      error: { code: "AGENT_START_TIMEOUT" },
    });
    const starting = clusterFacts(deployment, [
      pod({ name: CONTAINER_NAME, state: { running: {} } }),
    ]);
    expect(startTimedOut("alpha", starting).stopReason).toBe("START_TIMEOUT");
  });
});
