/**
 * The Kubernetes backend through @kubernetes/client-node against the API simulator: every
 * operation of SPEC §11 and the failure reasons of a pod.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isDeployError } from "../../src/core/errors.ts";
import { KubeApiSimulator } from "./api-simulator.ts";
import { agentToml, type BackendHarness, backendHarness } from "./backend-harness.ts";

let sim: KubeApiSimulator;
let harness: BackendHarness | undefined;

beforeEach(async () => {
  sim = await KubeApiSimulator.start();
});

afterEach(async () => {
  await harness?.close();
  harness = undefined;
  await sim.close();
});

async function start(
  agents: Record<string, string>,
  options: { maxRestarts?: number; podStartTimeoutMs?: number } = {},
): Promise<BackendHarness> {
  harness = await backendHarness(agents, { kubeconfigText: sim.kubeconfig() }, options);
  return harness;
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the operation to fail");
}

const deploymentOf = (name: string) => sim.object("deployments", name);

describe("Kubernetes backend on the API simulator", () => {
  it("deploys by server-side apply with field manager atoll-deploy and waits until ready", async () => {
    const h = await start({ greeter: agentToml("greeter") });
    expect(h.backend.status("greeter")).toMatchObject({
      state: "DISCOVERED",
      instance: "",
      host: "",
    });
    const status = await h.backend.deploy("greeter");
    expect(status).toMatchObject({
      state: "RUNNING",
      health: "HEALTHY",
      port: 8100,
      pid: 0,
      host: "node-a",
    });
    expect(status.instance).toMatch(/^atoll-greeter-/);
    const applies = sim.requests.filter((r) => r.contentType === "application/apply-patch+yaml");
    expect(applies.map((r) => r.path)).toEqual([
      "/api/v1/namespaces/agents/configmaps/atoll-greeter",
      "/apis/apps/v1/namespaces/agents/deployments/atoll-greeter",
      "/api/v1/namespaces/agents/services/atoll-greeter",
    ]);
    for (const apply of applies) {
      expect(apply.query).toContain("fieldManager=atoll-deploy");
      expect(apply.query).toContain("force=true");
    }
    expect(Object.keys(sim.managers("deployments", "atoll-greeter"))).toEqual([
      "atoll-deploy|Apply",
    ]);
    // Idempotent: a second Deploy of a running agent changes nothing.
    const before = sim.requests.length;
    expect(await h.backend.deploy("greeter")).toMatchObject({ state: "RUNNING" });
    expect(sim.requests.slice(before).filter((r) => r.method === "PATCH")).toEqual([]);
  });

  it("takes back a field someone changed by hand at the next Deploy (force)", async () => {
    const h = await start({ greeter: agentToml("greeter") });
    await h.backend.deploy("greeter");
    await h.backend.undeploy("greeter");
    sim.editAs("kubectl-edit", "deployments", "atoll-greeter", {
      spec: { template: { spec: { terminationGracePeriodSeconds: 99 } } },
    });
    await h.backend.deploy("greeter");
    expect(deploymentOf("atoll-greeter")?.spec.template.spec.terminationGracePeriodSeconds).toBe(1);
  });

  it("undeploys by scaling to 0 and waits until no pod is left", async () => {
    const h = await start({ greeter: agentToml("greeter") });
    await h.backend.deploy("greeter");
    sim.holdTermination = true;
    const pod = sim.pods()[0]?.metadata.name as string;
    const undeploy = h.backend.undeploy("greeter");
    await h.waitFor("greeter", (s) => s.state === "STOPPING");
    expect(sim.requests.at(-1)).toMatchObject({
      method: "PATCH",
      path: "/apis/apps/v1/namespaces/agents/deployments/atoll-greeter/scale",
      contentType: "application/merge-patch+json",
    });
    sim.finishTermination(pod);
    expect(await undeploy).toMatchObject({
      state: "STOPPED",
      stateReason: "STOPPED",
      port: 0,
      instance: "",
    });
    expect(deploymentOf("atoll-greeter")?.spec.replicas).toBe(0);
    // Undeploying a stopped agent is fine as it is.
    expect(await h.backend.undeploy("greeter")).toMatchObject({ state: "STOPPED" });
  });

  it("restarts with the restartedAt annotation, waiting for the new pod", async () => {
    const h = await start({ greeter: agentToml("greeter") });
    const first = await h.backend.deploy("greeter");
    const restarted = await h.backend.restart("greeter");
    expect(restarted).toMatchObject({ state: "RUNNING", health: "HEALTHY", restartCount: 0 });
    expect(restarted.instance).not.toBe(first.instance);
    const annotations = deploymentOf("atoll-greeter")?.spec.template.metadata.annotations;
    expect(annotations["kubectl.kubernetes.io/restartedAt"]).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(sim.pods().map((p) => p.metadata.name)).toEqual([restarted.instance]);
  });

  it("reports an unschedulable pod, gives up at the deadline and scales to 0", async () => {
    const h = await start({ gpu: agentToml("gpu", "", 1) }, { podStartTimeoutMs: 200 });
    sim.behaviour = "unschedulable";
    const deploy = h.backend.deploy("gpu");
    const waiting = await h.waitFor("gpu", (s) => s.stateReason === "UNSCHEDULABLE");
    expect(waiting).toMatchObject({ state: "STARTING" });
    expect(waiting.stateMessage).toContain("Insufficient nvidia.com/gpu");
    const error = await failure(deploy);
    expect(isDeployError(error, "AGENT_START_TIMEOUT")).toBe(true);
    const failed = await h.waitFor("gpu", (s) => s.state === "FAILED");
    expect(failed.stateReason).toBe("UNSCHEDULABLE");
    expect(deploymentOf("atoll-gpu")?.spec.replicas).toBe(0);
  });

  it("fails at once when the image cannot be pulled", async () => {
    const h = await start({ pull: agentToml("pull") });
    sim.behaviour = "image-pull-failure";
    const error = await failure(h.backend.deploy("pull"));
    expect(isDeployError(error, "AGENT_START_FAILED")).toBe(true);
    expect((error as Error).message).toContain("ImagePullBackOff");
    const failed = await h.waitFor("pull", (s) => s.state === "FAILED");
    expect(failed).toMatchObject({ stateReason: "IMAGE_PULL_FAILED" });
  });

  it("reports a crash during start, then enforces the restart budget by scaling to 0", async () => {
    const h = await start({ flaky: agentToml("flaky") }, { maxRestarts: 2 });
    sim.behaviour = "crash";
    const error = await failure(h.backend.deploy("flaky"));
    expect(isDeployError(error, "AGENT_EXITED_DURING_START")).toBe(true);
    expect((error as Error).message).toContain("exit code 3");
    const backoff = h.backend.status("flaky");
    expect(backoff).toMatchObject({ state: "BACKOFF", stateReason: "EXITED", restartCount: 1 });
    expect(backoff.lastExit).toMatchObject({ code: 3, signal: null });
    const pod = backoff.instance;
    sim.crash(pod, 3);
    await h.waitFor("flaky", (s) => s.restartCount === 2);
    expect(deploymentOf("atoll-flaky")?.spec.replicas).toBe(1);
    sim.crash(pod, 3);
    const failed = await h.waitFor("flaky", (s) => s.state === "FAILED");
    expect(failed.stateReason).toBe("CRASH_LOOP");
    expect(failed.stateMessage).toContain("more than max_restarts 2");
    expect(deploymentOf("atoll-flaky")?.metadata.annotations["atoll.dev/stop-reason"]).toBe(
      "CRASH_LOOP",
    );
    // A manual Deploy clears the record and starts from a fresh budget.
    sim.behaviour = "ready";
    expect(await h.backend.deploy("flaky")).toMatchObject({ state: "RUNNING", restartCount: 0 });
    expect(
      deploymentOf("atoll-flaky")?.metadata.annotations["atoll.dev/stop-reason"],
    ).toBeUndefined();
  });

  it("reports an OOM kill as MEMORY_LIMIT_EXCEEDED", async () => {
    const h = await start({ big: agentToml("big") }, { maxRestarts: 5 });
    const { instance } = await h.backend.deploy("big");
    sim.crash(instance, 137, "OOMKilled");
    const status = await h.waitFor("big", (s) => s.state === "BACKOFF");
    expect(status).toMatchObject({ stateReason: "MEMORY_LIMIT_EXCEEDED", restartCount: 1 });
  });

  it("stops an agent that exits with code 0 instead of letting kubelet restart it", async () => {
    const h = await start({ once: agentToml("once") });
    const { instance } = await h.backend.deploy("once");
    sim.setContainer(instance, {
      ready: false,
      state: {
        terminated: { exitCode: 0, reason: "Completed", finishedAt: new Date().toISOString() },
      },
    });
    const stopped = await h.waitFor("once", (s) => s.state === "STOPPED");
    expect(stopped).toMatchObject({ stateReason: "EXITED", lastExit: { code: 0 } });
    expect(deploymentOf("atoll-once")?.spec.replicas).toBe(0);
  });

  it("refuses definitions the cluster cannot run, and unknown agents, with the API's errors", async () => {
    const h = await start({
      stays: agentToml("stays", "auto_restart = false"),
      elsewhere: `${agentToml("elsewhere")}\n[kubernetes]\nnamespace = "other"\n`,
      broken: "[deployment]\nport = -1\n",
    });
    for (const [name, needle] of [
      ["stays", "deployment.auto_restart"],
      ["elsewhere", "kubernetes.namespace: other is not the server's namespace agents"],
      ["broken", "deployment.port"],
    ] as const) {
      const error = await failure(h.backend.deploy(name));
      expect(isDeployError(error, "AGENT_CONFIG_INVALID")).toBe(true);
      expect((error as Error).message).toContain(needle);
    }
    expect(h.backend.status("broken")).toMatchObject({ state: "INVALID" });
    expect(isDeployError(await failure(h.backend.deploy("nope")), "AGENT_NOT_FOUND")).toBe(true);
    expect(() => h.backend.status("bad name")).toThrow(/must match/);
    expect(sim.requests.filter((r) => r.method === "PATCH")).toEqual([]);
  });

  it("lets an Undeploy take over from a Deploy still waiting for its pod", async () => {
    const h = await start({ slow: agentToml("slow") });
    sim.behaviour = "manual";
    const deploy = h.backend.deploy("slow");
    await h.waitFor("slow", (s) => s.state === "STARTING" && s.instance !== "");
    const undeploy = h.backend.undeploy("slow");
    expect(isDeployError(await failure(deploy), "OPERATION_SUPERSEDED")).toBe(true);
    expect(await undeploy).toMatchObject({ state: "STOPPED" });
  });

  it("does not count restarts from before the server first saw the pod", async () => {
    const first = await start({ old: agentToml("old") }, { maxRestarts: 2 });
    const { instance } = await first.backend.deploy("old");
    sim.setContainer(instance, { restartCount: 7 });
    await first.close();
    harness = undefined;
    const second = await start({ old: agentToml("old") }, { maxRestarts: 2 });
    expect(second.backend.status("old")).toMatchObject({ state: "RUNNING", restartCount: 0 });
    sim.crash(instance, 1);
    expect(await second.waitFor("old", (s) => s.restartCount === 1)).toMatchObject({
      state: "BACKOFF",
    });
    expect(deploymentOf("atoll-old")?.spec.replicas).toBe(1);
  });

  it("relists after 410 Gone and gives watchers a fresh snapshot", async () => {
    const h = await start({ a: agentToml("a"), b: agentToml("b") });
    await h.backend.deploy("a");
    const revision = h.backend.events.revision;
    const seen: string[] = [];
    const unsubscribe = h.backend.events.subscribe((change) => seen.push(change.name));
    // Changes while the watches are down, then the history is gone: the informers must relist.
    sim.behaviour = "manual";
    sim.expireWatches();
    await h.waitFor("a", () => h.backend.relists >= 2);
    unsubscribe();
    expect(seen).toEqual(expect.arrayContaining(["a", "b"]));
    expect(h.backend.events.since(revision)).toBeUndefined();
    expect(
      sim.requests.filter((r) => r.query.includes("watch=true")).length,
    ).toBeGreaterThanOrEqual(4);
    // And the caches still follow the cluster afterwards.
    await h.backend.undeploy("a");
    expect(h.backend.status("a").state).toBe("STOPPED");
  });

  it("resumes a watch from the resourceVersion of the last bookmark", async () => {
    const isPodWatch = (r: { path: string; query: string }) =>
      r.path === "/api/v1/namespaces/agents/pods" && r.query.includes("watch=true");
    const firstWatch = sim.nextRequest(isPodWatch);
    await start({ a: agentToml("a") });
    expect((await firstWatch).query).toContain("allowWatchBookmarks=true");
    // Writes elsewhere move the resourceVersion; only a bookmark tells the watcher of it.
    sim.touch();
    sim.touch();
    const bookmarked = sim.resourceVersion;
    sim.bookmark();
    const resumed = sim.nextRequest(isPodWatch);
    sim.endWatches();
    expect((await resumed).query).toContain(`resourceVersion=${bookmarked}`);
  });

  it("streams the pod's log: the tail, then new lines while following", async () => {
    const h = await start({ talk: agentToml("talk") });
    const { instance } = await h.backend.deploy("talk");
    sim.appendLog(instance, "one");
    sim.appendLog(instance, "two");
    const tail: string[] = [];
    for await (const lines of h.backend.streamLogs("talk", {
      tailLines: 2,
      follow: false,
      signal: new AbortController().signal,
    })) {
      tail.push(...lines);
    }
    expect(tail).toEqual(["one", "two"]);
    const stop = new AbortController();
    const followed: string[] = [];
    const following = sim.nextRequest(
      (r) => r.path.endsWith("/log") && r.query.includes("follow=true"),
    );
    const done = (async () => {
      for await (const lines of h.backend.streamLogs("talk", {
        tailLines: 1,
        follow: true,
        signal: stop.signal,
      })) {
        followed.push(...lines);
        if (followed.includes("three")) stop.abort();
      }
    })();
    await following;
    sim.appendLog(instance, "three");
    await done;
    expect(followed).toEqual(["two", "three"]);
  });
});
