/**
 * The dashboard in a real headless Chromium against the real daemon: it lists the agents, follows
 * changes made through gRPC within a second, its buttons act and show refusals, its token prompt
 * works, it is usable by keyboard and on a phone, passes axe's WCAG A/AA rules, and the console
 * stays clean throughout.
 *
 * `UPDATE_SCREENSHOT=1 npx vitest run tests/e2e/dashboard.test.ts` also writes
 * docs/dashboard.png (and docs/dashboard-phone.png) from the first test's page.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { isGroupAlive } from "../../src/platform/terminate-group.ts";
import { faultAgentToml } from "../supervisor/harness.ts";
import { axeViolations, launchChromium, recordProblems } from "./browser.ts";
import { type Daemon, REPO, startDaemon, workspace } from "./daemon.ts";

let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const daemons: Daemon[] = [];
const contexts: BrowserContext[] = [];
const cleanups: (() => Promise<void>)[] = [];
const pids = new Set<number>();

afterEach(async () => {
  for (const context of contexts.splice(0)) await context.close();
  for (const daemon of daemons.splice(0)) expect(await daemon.stop("SIGTERM")).toBe(0);
  for (const cleanup of cleanups.splice(0)) await cleanup();
  const left = [...pids].filter(isGroupAlive);
  for (const pid of left) process.kill(-pid, "SIGKILL");
  pids.clear();
  expect(left).toEqual([]);
});

const basePort = (slot: number) => 29_000 + (process.pid % 30) * 40 + slot * 20;

const AGENTS = {
  alpha: { file: "agent.toml", text: faultAgentToml("alpha") },
  beta: { file: "agent.toml", text: faultAgentToml("beta") },
  // Refused by Deploy with AGENT_CONFIG_INVALID; the page shows its validation message.
  broken: { file: "agent.toml", text: '[agent]\nname = "broken"\n\n[deployment]\nport = "x"\n' },
};

async function serve(slot: number, extra: string[] = []): Promise<{ daemon: Daemon; url: string }> {
  const ws = await workspace(AGENTS);
  cleanups.push(ws.cleanup);
  const daemon = await startDaemon([
    "--agents-dir",
    ws.agentsDir,
    "--state-dir",
    ws.stateDir,
    "--host",
    "127.0.0.1",
    "--base-port",
    String(basePort(slot)),
    ...extra,
  ]);
  daemons.push(daemon);
  return { daemon, url: await daemon.httpUrl };
}

async function openPage(url: string, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  const problems = recordProblems(page);
  await page.goto(`${url}/`);
  return { page, problems, context };
}

/** A TCP proxy to `target` whose connections can be cut (and new ones refused) at will. */
async function cuttableProxy(target: URL) {
  const sockets = new Set<Socket>();
  let open = true;
  const server = createServer((client) => {
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    cut() {
      open = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      open = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const row = (page: Page, agent: string) => page.locator(`tr[data-agent="${agent}"]`);
const button = (page: Page, name: string) => page.getByRole("button", { name, exact: true });

describe("the dashboard in Chromium", () => {
  it("lists every agent, follows gRPC changes within a second, and its buttons act", async () => {
    const { daemon, url } = await serve(0);
    const { page, problems } = await openPage(url);
    await page.waitForSelector("body[data-ready=true]");
    expect(
      await page
        .locator("tbody tr")
        .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-agent"))),
    ).toEqual(["alpha", "beta", "broken"]);
    await expect(row(page, "broken").locator(".col-reason").textContent()).resolves.toMatch(
      /AGENT_CONFIG_INVALID: .*deployment\.port/,
    );
    expect(await row(page, "alpha").getAttribute("data-state")).toBe("discovered");

    // A change made through gRPC shows within a second of the server making it.
    const deployed = await daemon.client.deploy({ name: "alpha" });
    pids.add(deployed.agent?.pid ?? 0);
    await page.waitForSelector('tr[data-agent="alpha"][data-state="running"]', { timeout: 1000 });
    const alpha = row(page, "alpha");
    await expect(alpha.locator(".col-pid").textContent()).resolves.toBe(
      String(deployed.agent?.pid),
    );
    await expect(alpha.locator(".col-port").textContent()).resolves.toBe(
      String(deployed.agent?.port),
    );
    await expect(alpha.locator(".col-health").textContent()).resolves.toBe("healthy");

    // Its own buttons: Deploy beta, Restart alpha (a new pid), Undeploy alpha.
    await button(page, "Deploy beta").click();
    await page.waitForSelector('tr[data-agent="beta"][data-state="running"]');
    pids.add((await daemon.client.getStatus({ name: "beta" })).agent?.pid ?? 0);
    await button(page, "Restart alpha").click();
    await page.waitForFunction((oldPid) => {
      const cell = document.querySelector('tr[data-agent="alpha"] .col-pid');
      const state = document.querySelector('tr[data-agent="alpha"]')?.getAttribute("data-state");
      return state === "running" && cell?.textContent !== oldPid;
    }, String(deployed.agent?.pid));
    pids.add((await daemon.client.getStatus({ name: "alpha" })).agent?.pid ?? 0);
    await button(page, "Undeploy alpha").click();
    await page.waitForSelector('tr[data-agent="alpha"][data-state="stopped"]');
    expect((await daemon.client.getStatus({ name: "alpha" })).agent?.pid).toBe(0);

    // A refusal shows the server's message and reason.
    await button(page, "Deploy broken").click();
    const refusal = row(page, "broken").getByRole("alert");
    await expect(refusal.textContent()).resolves.toMatch(
      /^Deploy refused: .*deployment\.port.*\(AGENT_CONFIG_INVALID\)$/,
    );

    // The log panel follows beta's output.
    await button(page, "Logs beta").click();
    await page.waitForFunction(() =>
      document.getElementById("logs-output")?.textContent?.includes("READY"),
    );
    await expect(page.locator("#logs-agent").textContent()).resolves.toBe("beta");

    if (process.env.UPDATE_SCREENSHOT === "1") {
      await page.locator("#logs-output").evaluate((node) => {
        node.scrollTop = 0;
      });
      await page.screenshot({ path: path.join(REPO, "docs", "dashboard.png"), fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({
        path: path.join(REPO, "docs", "dashboard-phone.png"),
        fullPage: true,
      });
    }
    expect(problems).toEqual([]);
  });

  it("resumes a dropped stream after the last revision it saw: replays what it missed, live at once", async () => {
    const { daemon, url } = await serve(4);
    // The page talks to the daemon through a proxy the test can cut, the daemon staying up.
    const proxy = await cuttableProxy(new URL(url));
    cleanups.push(() => proxy.close());
    const { page } = await openPage(proxy.url);
    await page.waitForSelector("body[data-ready=true]");
    proxy.cut();
    await page.waitForSelector("#connection:not([data-state=live])");
    // Changed while the page could not hear: the resume must replay it, not miss it.
    pids.add((await daemon.client.deploy({ name: "beta" })).agent?.pid ?? 0);
    proxy.restore();
    await page.waitForSelector('tr[data-agent="beta"][data-state="running"]');
    // Idle heartbeats come every 15 s; "live" well before that is the caught-up marker.
    await page.waitForSelector("#connection[data-state=live]", { timeout: 5000 });
    // Caught up and still following: the next change shows too.
    await daemon.client.undeploy({ name: "beta" });
    await page.waitForSelector('tr[data-agent="beta"][data-state="stopped"]');
    // Dropped again with nothing missed: the server's caught-up heartbeat makes it live at once.
    proxy.cut();
    await page.waitForSelector("#connection:not([data-state=live])");
    proxy.restore();
    await page.waitForSelector("#connection[data-state=live]", { timeout: 5000 });
  });

  it("resumes after the daemon restarts and shows a fresh snapshot", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-dash-restart-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const ws = await workspace(AGENTS);
    cleanups.push(ws.cleanup);
    // A fixed HTTP port, so the page's origin survives the restart.
    const probe = await startDaemon(["--agents-dir", ws.agentsDir, "--state-dir", dir]);
    const port = new URL(await probe.httpUrl).port;
    await probe.stop();
    const args = [
      "--agents-dir",
      ws.agentsDir,
      "--state-dir",
      dir,
      "--http-listen",
      `127.0.0.1:${port}`,
      "--base-port",
      String(basePort(1)),
      "--host",
      "127.0.0.1",
    ];
    const first = await startDaemon(args);
    const { page } = await openPage(await first.httpUrl);
    await page.waitForSelector("body[data-ready=true]");
    await first.stop();
    await page.waitForSelector("#connection[data-state=offline]");
    await rm(path.join(ws.agentsDir, "beta"), { recursive: true });
    const second = await startDaemon(args);
    daemons.push(second);
    // Back live without a reload, and beta (gone meanwhile) has left the table.
    await page.waitForSelector("#connection[data-state=live]", { timeout: 15_000 });
    await page.waitForFunction(() => document.querySelector('tr[data-agent="beta"]') === null);
    expect(await page.locator("tbody tr").count()).toBe(2);
  });

  it("asks for the token once, keeps it for the tab, and asks again for a wrong one", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "atoll-dash-token-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const tokenFile = path.join(dir, "token");
    await writeFile(tokenFile, "dashboard-s3cret\n");
    const { daemon, url } = await serve(2, ["--auth-token-file", tokenFile]);
    const { page, problems } = await openPage(url);
    const dialog = page.getByRole("dialog", { name: "Access token" });
    await dialog.waitFor();
    await page.getByLabel("Token", { exact: true }).fill("wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(dialog.getByRole("alert").textContent()).resolves.toMatch(/did not accept/);
    await page.getByLabel("Token", { exact: true }).fill("dashboard-s3cret");
    await page.keyboard.press("Enter");
    await page.waitForSelector("body[data-ready=true]");
    expect(await dialog.isVisible()).toBe(false);
    expect(page.url()).not.toContain("s3cret");
    // The token goes along with the page's own calls: its Deploy button works.
    await button(page, "Deploy alpha").click();
    await page.waitForSelector('tr[data-agent="alpha"][data-state="running"]');
    const metadata = new Metadata();
    metadata.set("authorization", "Bearer dashboard-s3cret");
    pids.add((await daemon.client.getStatus({ name: "alpha" }, { metadata })).agent?.pid ?? 0);
    // Asked once: a reload in the same tab keeps the token.
    await page.reload();
    await page.waitForSelector("body[data-ready=true]");
    expect(await dialog.isVisible()).toBe(false);
    expect(problems).toEqual([]);
  });

  it("works by keyboard with a visible focus, on a phone, and passes axe's WCAG A and AA rules", async () => {
    const { url } = await serve(3);
    const { page, problems } = await openPage(url);
    await page.waitForSelector("body[data-ready=true]");
    expect(await axeViolations(page)).toEqual([]);

    // Tab order reaches the first row's buttons; the focused one has a visible outline.
    let focused = "";
    for (let i = 0; i < 10 && focused !== "Deploy alpha"; i++) {
      await page.keyboard.press("Tab");
      focused = await page.evaluate(() => document.activeElement?.getAttribute("aria-label") ?? "");
    }
    expect(focused).toBe("Deploy alpha");
    const outline = await page.evaluate(() => {
      const style = getComputedStyle(document.activeElement as Element);
      return { style: style.outlineStyle, width: Number.parseFloat(style.outlineWidth) };
    });
    expect(outline.style).not.toBe("none");
    expect(outline.width).toBeGreaterThanOrEqual(2);

    // On a phone each agent is a card of labelled fields, nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    const layout = await page.evaluate(() => ({
      rowDisplay: getComputedStyle(document.querySelector("tbody tr") as Element).display,
      label: getComputedStyle(document.querySelector("tbody td.col-port") as Element, "::before")
        .content,
      overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    }));
    expect(layout).toEqual({ rowDisplay: "block", label: '"Port"', overflow: 0 });
    expect(await axeViolations(page)).toEqual([]);
    expect(problems).toEqual([]);
  });
});
