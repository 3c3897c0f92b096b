/**
 * Smoke test of a rendered Deployment on a real container runtime: `podman kube play` runs the
 * manifests `render` prints, on an image of the agent runtime, and the agent answers a prompt.
 *
 * No registry is reachable here, so the image is made with `podman import` from a root file
 * system assembled from this machine (the Node binary of the `node` devDependency, its shared
 * libraries, the runtime's sources and smol-toml); what `Containerfile` builds for real is the
 * same runtime from the packed package. Podman runs in private storage (its own --root and
 * --runroot, vfs) with a private containers.conf (runc, cgroupfs, nofile/nproc ulimits within
 * this machine's limits; /work/shared/notes/browser-and-kubernetes.md), so nothing of other
 * users' containers is touched, and everything is removed at the end. Skipped, with a message,
 * where podman or runc is missing.
 */
import { execFileSync } from "node:child_process";
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { toYamlDocuments } from "../../src/kube/manifest-yaml.ts";
import { objectsOf, renderAgent } from "../../src/kube/render.ts";
import { REPO } from "../e2e/daemon.ts";
import { definitionOf } from "./render-helpers.ts";

function has(program: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${program}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const available = has("podman") && has("runc") && process.platform === "linux";
if (!available) {
  process.stderr.write(
    "tests/kube/podman-smoke.test.ts: skipped (needs podman and runc: apt-get install podman runc catatonit)\n",
  );
}

const IMAGE = `localhost/atoll-agent-smoke:${process.pid}`;
let work: string | undefined;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The shared libraries `ldd` names for `binary`. */
function libraries(binary: string): string[] {
  const out = execFileSync("ldd", [binary], { encoding: "utf8" });
  return [...out.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1] as string);
}

async function rootFileSystem(dir: string): Promise<void> {
  const node = path.join(REPO, "node_modules", "node", "bin", "node");
  const env = "/usr/bin/env";
  for (const lib of new Set([...libraries(node), ...libraries(env)])) {
    await mkdir(path.join(dir, path.dirname(lib)), { recursive: true });
    await cp(lib, path.join(dir, lib), { dereference: true });
  }
  await mkdir(path.join(dir, "usr/local/bin"), { recursive: true });
  await cp(node, path.join(dir, "usr/local/bin/node"));
  await cp(env, path.join(dir, "usr/bin/env"));
  const app = path.join(dir, "opt/atoll-deploy");
  await cp(path.join(REPO, "bin"), path.join(app, "bin"), { recursive: true });
  await cp(path.join(REPO, "package.json"), path.join(app, "package.json"));
  // The bin runs the compiled runtime (dist/ is built by the tests' global set-up).
  await cp(path.join(REPO, "dist", "src", "agent"), path.join(app, "dist", "src", "agent"), {
    recursive: true,
  });
  await cp(
    path.join(REPO, "node_modules", "smol-toml"),
    path.join(app, "node_modules", "smol-toml"),
    {
      recursive: true,
    },
  );
  await symlink(
    "/opt/atoll-deploy/bin/atoll-agent.js",
    path.join(dir, "usr/local/bin/atoll-agent"),
  );
  await mkdir(path.join(dir, "tmp"), { recursive: true });
  await mkdir(path.join(dir, "etc/atoll/agent"), { recursive: true });
}

function podman(dir: string) {
  const conf = path.join(dir, "containers.conf");
  const base = [
    "--root",
    path.join(dir, "storage"),
    "--runroot",
    path.join(dir, "run"),
    "--storage-driver",
    "vfs",
  ];
  return (args: string[], input?: NodeJS.ReadableStream) =>
    execa("podman", [...base, ...args], {
      env: { CONTAINERS_CONF: conf },
      timeout: 90_000,
      ...(input === undefined ? {} : { input: input as never }),
    });
}

afterAll(async () => {
  if (work === undefined) return;
  const run = podman(work);
  await run(["kube", "down", path.join(work, "agent.yaml")]).catch(() => undefined);
  await run(["rmi", "--all", "--force"]).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
}, 120_000);

describe.skipIf(!available)("a rendered Deployment under podman kube play", () => {
  it("runs the agent with its memory limit and answers a prompt", {
    timeout: 180_000,
  }, async () => {
    work = await mkdtemp(path.join(os.tmpdir(), "atoll-podman-"));
    const { hard } = {
      hard: Number(execFileSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).trim()),
    };
    const nofile = Number.isFinite(hard) ? Math.min(hard, 65_536) : 1024;
    await writeFile(
      path.join(work, "containers.conf"),
      `[containers]\ndefault_ulimits = ["nofile=${nofile}:${nofile}", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n`,
    );
    const rootfs = path.join(work, "rootfs");
    await rootFileSystem(rootfs);
    const run = podman(work);
    const tar = execa("tar", ["-C", rootfs, "-c", "."], { buffer: false });
    await run(
      ["import", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin", "-", IMAGE],
      tar.stdout ?? undefined,
    );
    await tar;

    const port = await freePort();
    const text = `[agent]\nname = "smoke"\n[deployment]\nport = ${port}\nstop_timeout = 2\n[resources]\nmemory_limit = "256MiB"\n[llm]\nmodel = "echo"\n`;
    const rendered = renderAgent(
      { definition: definitionOf(text, "smoke"), text },
      { version: "0.1.0", image: IMAGE },
    );
    if (!rendered.ok) throw new Error(rendered.problems.join("\n"));
    const manifest = path.join(work, "agent.yaml");
    await writeFile(manifest, toYamlDocuments(objectsOf(rendered.objects)));
    await run(["kube", "play", manifest]);

    // The agent's own readiness, probed as a startup probe would: bounded, not a fixed sleep.
    const deadline = Date.now() + 60_000;
    let status: Response | undefined;
    while (Date.now() < deadline) {
      status = await fetch(`http://127.0.0.1:${port}/status`).catch(() => undefined);
      if (status?.ok) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(status?.ok).toBe(true);
    const answer = await fetch(`http://127.0.0.1:${port}/prompt`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "hello" }),
    });
    expect(await answer.json()).toEqual({ response: "[smoke] hello", model: "echo" });
    const memory = await run([
      "inspect",
      "atoll-smoke-pod-0-agent",
      "--format",
      "{{.HostConfig.Memory}}",
    ]);
    expect(memory.stdout.trim()).toBe(String(256 * 1024 * 1024));
  });
});
