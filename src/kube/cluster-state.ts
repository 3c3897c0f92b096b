/**
 * What an agent's Deployment and pods say about it, as the lifecycle of SPEC §4 (pure). The
 * backend feeds in what its caches hold and gets the state, health, reason and facts to show.
 *
 * Pod and container status fields are read as the API documents them:
 * https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/ (phases, conditions
 * PodScheduled/Ready, container states waiting/running/terminated, `started`, `restartCount`,
 * `lastState`) and https://kubernetes.io/docs/concepts/containers/images/#imagepullbackoff.
 */
import { constants } from "node:os";
import type { AgentStateName, ExitRecord, HealthName } from "../core/agent-state.ts";
import { CONTAINER_NAME } from "./render-pod.ts";

/** Deployment annotations the server writes when it stops an agent itself. */
export const STOP_REASON_ANNOTATION = "atoll.dev/stop-reason";
export const STOP_MESSAGE_ANNOTATION = "atoll.dev/stop-message";
/** The pod-template annotation of a restart (what `kubectl rollout restart` sets). */
export const RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt";

interface Meta {
  readonly name?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly creationTimestamp?: string | Date;
  readonly deletionTimestamp?: string | Date;
  readonly resourceVersion?: string;
  readonly [field: string]: unknown;
}

/** The fields of a Deployment the backend reads. */
export interface ClusterDeployment {
  readonly metadata: Meta;
  readonly spec?: { readonly replicas?: number; readonly [field: string]: unknown };
  readonly [field: string]: unknown;
}

interface Terminated {
  readonly exitCode?: number;
  readonly signal?: number;
  readonly reason?: string;
  readonly message?: string;
  readonly finishedAt?: string | Date;
}

export interface ContainerStatus {
  readonly name: string;
  readonly ready?: boolean;
  readonly started?: boolean;
  readonly restartCount?: number;
  readonly state?: {
    readonly waiting?: { readonly reason?: string; readonly message?: string };
    readonly running?: { readonly startedAt?: string | Date };
    readonly terminated?: Terminated;
  };
  readonly lastState?: { readonly terminated?: Terminated };
}

/** The fields of a Pod the backend reads. */
export interface ClusterPod {
  readonly metadata: Meta;
  readonly spec?: { readonly nodeName?: string; readonly [field: string]: unknown };
  readonly status?: {
    readonly phase?: string;
    readonly conditions?: readonly {
      readonly type: string;
      readonly status: string;
      readonly reason?: string;
      readonly message?: string;
    }[];
    readonly containerStatuses?: readonly ContainerStatus[];
  };
  readonly [field: string]: unknown;
}

/** Reasons kubelet gives a waiting container whose image cannot be had. */
const IMAGE_PULL_REASONS = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "ErrImageNeverPull",
  "RegistryUnavailable",
]);

export interface ClusterFacts {
  readonly state: AgentStateName;
  readonly health: HealthName;
  readonly reason: string;
  readonly message: string;
  /** The pod that stands for the agent now (newest not terminating, else newest). */
  readonly pod: ClusterPod | undefined;
  /** Its container's status. */
  readonly container: ContainerStatus | undefined;
  readonly host: string;
  readonly instance: string;
  readonly startTimeMs: number | undefined;
  readonly lastExit: ExitRecord | undefined;
  /** The container exited with code 0 by itself: the agent stopped itself (SPEC §2). */
  readonly exitedCleanly: boolean;
  /** The container exited or crashed in this pod (restartCount above 0 or terminated now). */
  readonly crashed: boolean;
}

function ms(time: string | Date | undefined): number | undefined {
  if (time === undefined) return undefined;
  const value = time instanceof Date ? time.getTime() : Date.parse(time);
  return Number.isNaN(value) ? undefined : value;
}

function signalName(signal: number | undefined): string | null {
  if (signal === undefined || signal === 0) return null;
  const found = Object.entries(constants.signals).find(([, n]) => n === signal);
  return found?.[0] ?? `signal ${signal}`;
}

function exitOf(terminated: Terminated | undefined): ExitRecord | undefined {
  if (terminated === undefined) return undefined;
  const signal = signalName(terminated.signal);
  // Kubelet reports a death by signal as exit code 128 + n (and sometimes `signal` as well).
  return {
    code: signal === null ? (terminated.exitCode ?? null) : null,
    signal,
    atMs: ms(terminated.finishedAt) ?? 0,
  };
}

/** `exited with code 3`, `killed by the kernel: out of memory (OOMKilled)`, ... */
function describeExit(terminated: Terminated): { reason: string; message: string } {
  if (terminated.reason === "OOMKilled") {
    return {
      reason: "MEMORY_LIMIT_EXCEEDED",
      message: "killed for exceeding its memory limit (OOMKilled)",
    };
  }
  const signal = signalName(terminated.signal);
  if (signal !== null) return { reason: "EXITED", message: `killed by ${signal}` };
  return { reason: "EXITED", message: `exited with code ${terminated.exitCode ?? "unknown"}` };
}

function byNewest(a: ClusterPod, b: ClusterPod): number {
  return (ms(b.metadata.creationTimestamp) ?? 0) - (ms(a.metadata.creationTimestamp) ?? 0);
}

/** The pod that stands for the agent: the newest that is not terminating, else the newest. */
export function currentPod(pods: readonly ClusterPod[]): ClusterPod | undefined {
  const sorted = [...pods].sort(byNewest);
  return sorted.find((p) => p.metadata.deletionTimestamp === undefined) ?? sorted[0];
}

/** The status of the agent's container in `pod`, if kubelet reports one yet. */
export function agentContainer(pod: ClusterPod | undefined): ContainerStatus | undefined {
  return pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
}

/**
 * The agent's state from its Deployment (undefined: never applied, DISCOVERED) and pods. Pure.
 */
export function clusterFacts(
  deployment: ClusterDeployment | undefined,
  pods: readonly ClusterPod[],
): ClusterFacts {
  const pod = currentPod(pods);
  const container = agentContainer(pod);
  const terminatedNow = container?.state?.terminated;
  const lastTerminated = terminatedNow ?? container?.lastState?.terminated;
  const base = {
    pod,
    container,
    host: pod?.spec?.nodeName ?? "",
    instance: pod?.metadata.name ?? "",
    startTimeMs: ms(container?.state?.running?.startedAt),
    lastExit: exitOf(lastTerminated),
    exitedCleanly:
      pod?.metadata.deletionTimestamp === undefined &&
      lastTerminated?.exitCode === 0 &&
      lastTerminated.reason !== "OOMKilled" &&
      (terminatedNow !== undefined || container?.state?.waiting?.reason === "CrashLoopBackOff"),
    crashed: (container?.restartCount ?? 0) > 0 || terminatedNow !== undefined,
  };
  const facts = (
    state: AgentStateName,
    health: HealthName,
    reason: string,
    message: string,
  ): ClusterFacts => ({ ...base, state, health, reason, message });

  const replicas = deployment?.spec?.replicas ?? 0;
  const annotations = deployment?.metadata.annotations ?? {};
  const stopReason = annotations[STOP_REASON_ANNOTATION];
  const stopMessage = annotations[STOP_MESSAGE_ANNOTATION] ?? "";
  if (deployment === undefined && pods.length === 0) {
    return facts("DISCOVERED", "UNKNOWN", "", "");
  }
  if (replicas === 0) {
    if (pods.length > 0) {
      return facts(
        "STOPPING",
        "UNKNOWN",
        stopReason ?? "STOPPING",
        "waiting for the pod to terminate",
      );
    }
    if (stopReason === undefined) return facts("STOPPED", "UNKNOWN", "STOPPED", "scaled to 0");
    return facts(
      stopReason === "EXITED" ? "STOPPED" : "FAILED",
      "UNKNOWN",
      stopReason,
      stopMessage,
    );
  }
  if (pod === undefined)
    return facts("STARTING", "UNKNOWN", "PENDING", "waiting for the pod to be created");
  if (pod.metadata.deletionTimestamp !== undefined) {
    return facts(
      "STOPPING",
      "UNKNOWN",
      "RESTARTING",
      `waiting for pod ${base.instance} to terminate`,
    );
  }
  const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled");
  if (scheduled?.status === "False" && scheduled.reason === "Unschedulable") {
    return facts(
      "STARTING",
      "UNKNOWN",
      "UNSCHEDULABLE",
      scheduled.message ?? "no node can run the pod",
    );
  }
  const waiting = container?.state?.waiting;
  if (waiting?.reason !== undefined && IMAGE_PULL_REASONS.has(waiting.reason)) {
    return facts(
      "STARTING",
      "UNKNOWN",
      "IMAGE_PULL_FAILED",
      `${waiting.reason}: ${waiting.message ?? "the image cannot be pulled"}`,
    );
  }
  if (terminatedNow !== undefined || waiting?.reason === "CrashLoopBackOff") {
    const exit = describeExit(lastTerminated ?? {});
    const backoff =
      waiting?.reason === "CrashLoopBackOff" ? "; kubelet restarts it after its backoff" : "";
    return facts("BACKOFF", "UNKNOWN", exit.reason, `${exit.message}${backoff}`);
  }
  if (container?.state?.running !== undefined) {
    if (container.ready === true) {
      return facts(
        "RUNNING",
        "HEALTHY",
        "STARTED",
        `pod ${base.instance} ready on node ${base.host}`,
      );
    }
    if (container.started === true) {
      return facts("RUNNING", "UNHEALTHY", "HEALTH_CHECK_FAILED", "the readiness probe fails");
    }
    return facts("STARTING", "UNKNOWN", "STARTING", "waiting for the startup probe");
  }
  return facts(
    "STARTING",
    "UNKNOWN",
    "PENDING",
    waiting?.reason === undefined
      ? `pod ${base.instance} is ${pod.status?.phase ?? "Pending"}`
      : waiting.reason,
  );
}
