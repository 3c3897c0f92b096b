/**
 * The Kubernetes backend against a real cluster: the scenarios of the simulator suite that a
 * real kubelet can play (deploy, status from the caches, logs, restart, undeploy, an image that
 * cannot be pulled, a pod no node can take, a crash loop), run when ATOLL_KUBE_TEST_CONTEXT
 * names a context of the kubeconfig ($KUBECONFIG or ~/.kube/config). Skipped otherwise.
 *
 * ATOLL_KUBE_TEST_NAMESPACE (default atoll-test) must exist and be disposable: the objects
 * stay there, scaled to 0. ATOLL_KUBE_TEST_IMAGE (default atoll-agent:<version>) is an image
 * of the runtime (Containerfile) that the cluster can pull.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isDeployError } from "../../src/core/errors.ts";
import { agentToml, type BackendHarness, backendHarness } from "./backend-harness.ts";

const context = process.env.ATOLL_KUBE_TEST_CONTEXT;
const namespace = process.env.ATOLL_KUBE_TEST_NAMESPACE ?? "atoll-test";
const image = process.env.ATOLL_KUBE_TEST_IMAGE ?? "atoll-agent:0.1.0";

if (context === undefined || context === "") {
  // Said once, so a run without a cluster shows why these did not run.
  process.stderr.write(
    "tests/kube/live-cluster.test.ts: skipped (set ATOLL_KUBE_TEST_CONTEXT to a kubeconfig context to run it)\n",
  );
}

const withImage = (name: string, extra = "", kubernetes = "") =>
  `${agentToml(name, extra, 60)}\n[kubernetes]\nimage = "${image}"\n${kubernetes}\n`;

describe.skipIf(context === undefined || context === "")(
  "Kubernetes backend on a live cluster",
  () => {
    let h: BackendHarness;

    beforeAll(async () => {
      h = await backendHarness(
        {
          "live-greeter": withImage("live-greeter"),
          "live-pull": `${agentToml("live-pull", "", 60)}\n[kubernetes]\nimage = "atoll-deploy.invalid/none:0"\n`,
          "live-nowhere": withImage(
            "live-nowhere",
            "",
            '[kubernetes.node_selector]\n"atoll.dev/no-such-node" = "x"',
          ),
          "live-crash": withImage(
            "live-crash",
            'command = ["atoll-agent", "--no-such-flag"]\nmax_restarts = 1',
          ),
        },
        { context, namespace },
        { podStartTimeoutMs: 20_000 },
      );
    }, 60_000);

    afterAll(async () => {
      for (const name of ["live-greeter", "live-pull", "live-nowhere", "live-crash"]) {
        await h?.backend.undeploy(name).catch(() => undefined);
      }
      await h?.close();
    }, 120_000);

    it("deploys, reports, streams logs, restarts and undeploys", { timeout: 300_000 }, async () => {
      const deployed = await h.backend.deploy("live-greeter");
      expect(deployed).toMatchObject({ state: "RUNNING", health: "HEALTHY", port: 8100, pid: 0 });
      expect(deployed.instance).toMatch(/^atoll-live-greeter-/);
      expect(deployed.host).not.toBe("");
      const lines: string[] = [];
      for await (const batch of h.backend.streamLogs("live-greeter", {
        tailLines: 20,
        follow: false,
        signal: new AbortController().signal,
      })) {
        lines.push(...batch);
      }
      expect(lines.length).toBeGreaterThan(0);
      const restarted = await h.backend.restart("live-greeter");
      expect(restarted.instance).not.toBe(deployed.instance);
      expect(await h.backend.undeploy("live-greeter")).toMatchObject({ state: "STOPPED" });
    });

    it("fails at once on an image that cannot be pulled", { timeout: 180_000 }, async () => {
      const error = await h.backend.deploy("live-pull").catch((e: unknown) => e);
      expect(isDeployError(error, "AGENT_START_FAILED")).toBe(true);
      await h.waitFor(
        "live-pull",
        (s) => s.state === "FAILED" && s.stateReason === "IMAGE_PULL_FAILED",
        60_000,
      );
    });

    it("gives up on a pod no node can take", { timeout: 180_000 }, async () => {
      const error = await h.backend.deploy("live-nowhere").catch((e: unknown) => e);
      expect(isDeployError(error, "AGENT_START_TIMEOUT")).toBe(true);
      await h.waitFor(
        "live-nowhere",
        (s) => s.state === "FAILED" && s.stateReason === "UNSCHEDULABLE",
        60_000,
      );
    });

    it("reports a crash during start and stops a crash loop past max_restarts", {
      timeout: 300_000,
    }, async () => {
      const error = await h.backend.deploy("live-crash").catch((e: unknown) => e);
      expect(isDeployError(error, "AGENT_EXITED_DURING_START")).toBe(true);
      await h.waitFor(
        "live-crash",
        (s) => s.state === "FAILED" && s.stateReason === "CRASH_LOOP",
        240_000,
      );
    });
  },
);
