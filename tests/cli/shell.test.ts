import { spawn, spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { completeShellLine, SHELL_PROMPT } from "../../src/cli/commands/shell.ts";
import {
  aborted,
  Children,
  CLI,
  CliProcess,
  cannedAgents,
  cliEnv,
  type FakeServer,
  fakeHandlers,
  spawnCli,
  startFakeServer,
} from "./helpers.ts";

const children = new Children();
const servers: FakeServer[] = [];

afterEach(async () => {
  await children.killAll();
  for (const s of servers.splice(0)) s.server.forceShutdown();
});

async function fake(overrides: Parameters<typeof fakeHandlers>[1] = {}): Promise<FakeServer> {
  const server = await startFakeServer(fakeHandlers(cannedAgents(), overrides));
  servers.push(server);
  return server;
}

describe("completion", () => {
  const names = ["alpha", "beta", "broken"];

  it("completes command words, with a space after a single match", () => {
    expect(completeShellLine("dep", names)).toEqual([["deploy "], "dep"]);
    expect(completeShellLine("re", names)).toEqual([["restart "], "re"]);
    expect(completeShellLine("", names)[0]).toContain("undeploy");
  });

  it("completes agent names after commands that take one, and `deployment` after list", () => {
    expect(completeShellLine("status b", names)).toEqual([["beta", "broken"], "b"]);
    expect(completeShellLine("deploy al", names)).toEqual([["alpha "], "al"]);
    expect(completeShellLine("list d", names)).toEqual([["deployment "], "d"]);
    expect(completeShellLine("help x", names)).toEqual([[], "x"]);
    expect(completeShellLine("deploy alpha x", names)).toEqual([[], "x"]);
  });
});

describe("shell with piped input", () => {
  it("runs each line like the command line and keeps going after errors", async () => {
    const { address } = await fake();
    const shell = spawnCli(children, ["shell", "--server", address]);
    shell.write(
      "list deployment\ndeploy alpha\n\nstatus ghost\nfrob\ndeploy\nundeploy alpha\nexit\n",
    );
    const result = await shell.exited;
    expect(result.code).toBe(0);
    expect(result.stdout.startsWith(SHELL_PROMPT)).toBe(true);
    expect(result.stdout).toContain("Agent Name  Status      Port  PID   Health   Restarts\n");
    expect(result.stdout).toContain(`${SHELL_PROMPT}✓ Agent alpha deployed on port 8100\n`);
    expect(result.stdout).toContain(`${SHELL_PROMPT}✓ Agent alpha stopped\n`);
    expect(result.stderr).toBe(
      [
        "✗ Agent ghost: agent ghost not found (AGENT_NOT_FOUND)",
        '✗ unknown command "frob" (type help for the commands)',
        "✗ deploy: missing agent name (usage: deploy <name>)",
        "",
      ].join("\n"),
    );
  });

  it("ends at the end of input and prints help", async () => {
    const { address } = await fake();
    const shell = spawnCli(children, ["shell", "--server", address]);
    shell.write("help\n");
    shell.child.stdin?.end();
    const result = await shell.exited;
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("list deployment");
    expect(result.stdout).toContain("exit ");
  });
});

const hasScript = spawnSync("script", ["--version"], { encoding: "utf8" }).status === 0;

/** What a terminal would show, roughly: no escape sequences, no carriage returns. */
function screen(text: string): string {
  return (
    text
      // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences
      .replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "")
      .replace(/\r/g, "")
  );
}

function shellInPty(address: string, env: NodeJS.ProcessEnv = cliEnv()): CliProcess {
  const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const command = [process.execPath, CLI, "shell", "--server", address].map(quote).join(" ");
  const child = spawn("script", ["-qefc", command, "/dev/null"], {
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  return children.track(new CliProcess(child));
}

describe.skipIf(!hasScript)("shell in a terminal", () => {
  it("completes names, recalls history, shows progress, and cancels with Ctrl-C", async () => {
    let deploys = 0;
    const { address } = await fake({
      deploy: async (request, context) => {
        deploys += 1;
        if (request.name === "alpha") {
          // Hangs until the user presses Ctrl-C.
          await aborted(context.signal);
        }
        return { agent: cannedAgents().get(request.name) };
      },
    });
    const shell = shellInPty(address);
    const seen = () => screen(shell.stdout);
    const count = (text: string) => seen().split(text).length - 1;
    await shell.waitFor(() => seen().includes(SHELL_PROMPT), "the first prompt");
    expect(seen()).toContain(`atoll-deploy shell on ${address}`);

    // Each key waits for the terminal to show the previous one: readline completes only a Tab
    // that arrives on its own, not one inside a pasted chunk.
    const key = async (keys: string, shows: (screen: string) => boolean, what: string) => {
      shell.write(keys);
      await shell.waitFor(() => shows(seen()), what);
    };
    const since = (marker: string) => seen().slice(seen().lastIndexOf(marker));
    await key("sta", (s) => s.includes("sta"), "the typed word");
    await key("\t", (s) => s.includes("status "), "the completed command");
    await key("be", (s) => s.includes("status be"), "the typed name");
    await key("\t", (s) => s.includes("status beta"), "the completed name");
    await key("\r", () => count("Config:") === 1, "the status block");
    expect(seen()).toMatch(/Agent: +beta\nStatus: +RUNNING/);

    await key("\u001b[A", () => since("Config:").includes("status beta"), "the recalled line");
    await key("\r", () => count("Config:") === 2, "the recalled status");

    await key("deploy alpha\r", (s) => s.includes("Deploying alpha"), "the progress indicator");
    await key("\u0003", (s) => s.includes("✗ Agent alpha: interrupted"), "the cancel");
    shell.write("exit\r");
    const result = await shell.exited;
    expect(result.code).toBe(0);
    expect(deploys).toBe(1);
  });
});
