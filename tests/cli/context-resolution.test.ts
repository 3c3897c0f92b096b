import { describe, expect, it } from "vitest";
import type { ContextsFile } from "../../src/cli/client-contexts.ts";
import { DEFAULT_SERVER, parseCommandLine } from "../../src/cli/command-line.ts";
import { resolveClientOptions, UnknownContextError } from "../../src/cli/context-resolution.ts";

const FILE: ContextsFile = {
  path: "/cfg/contexts.toml",
  current: "cur",
  contexts: [
    {
      name: "a",
      server: "a:1",
      tokenFile: "/t/a",
      tlsCa: undefined,
      tlsCert: undefined,
      tlsKey: undefined,
    },
    {
      name: "cur",
      server: "cur:1",
      tokenFile: undefined,
      tlsCa: "/t/ca",
      tlsCert: "/t/c",
      tlsKey: "/t/k",
    },
  ],
};

function resolved(argv: string[], env: Record<string, string> = {}, file = FILE) {
  const line = parseCommandLine(argv, env);
  if (line.kind !== "client") throw new Error(JSON.stringify(line));
  return resolveClientOptions(line.options, file);
}

describe("choosing the server of a client command", () => {
  it.each([
    [
      ["list", "--server", "s:1", "--tls-ca", "/f"],
      { ATOLL_DEPLOY_CONTEXT: "a", ATOLL_DEPLOY_SERVER: "e:1" },
      "s:1",
      undefined,
    ],
    [
      ["list", "--context", "a"],
      { ATOLL_DEPLOY_CONTEXT: "cur", ATOLL_DEPLOY_SERVER: "e:1" },
      "a:1",
      "a",
    ],
    [["list"], { ATOLL_DEPLOY_CONTEXT: "a", ATOLL_DEPLOY_SERVER: "e:1" }, "a:1", "a"],
    [["list"], { ATOLL_DEPLOY_SERVER: "e:1" }, "e:1", undefined],
    [["list"], {}, "cur:1", "cur"],
  ])("%j with env %j goes to %s (context %s)", (argv, env, server, context) => {
    const options = resolved(argv, env);
    expect(options.server).toBe(server);
    expect(options.contextName).toBe(context);
  });

  it("falls back to the default server without a current context", () => {
    const options = resolved(["list"], {}, { ...FILE, current: undefined });
    expect(options.server).toBe(DEFAULT_SERVER);
    expect(options.contextName).toBeUndefined();
  });

  it("takes the context's credentials, the command line's own flags winning", () => {
    expect(resolved(["status", "x", "--context", "a"])).toMatchObject({ tokenFile: "/t/a" });
    expect(resolved(["status", "x", "--context", "a", "--token-file", "/mine"]).tokenFile).toBe(
      "/mine",
    );
    expect(resolved(["list"])).toMatchObject({ tlsCa: "/t/ca", tlsCert: "/t/c", tlsKey: "/t/k" });
    expect(resolved(["list", "--tls-cert", "/m/c", "--tls-key", "/m/k"])).toMatchObject({
      tlsCa: "/t/ca",
      tlsCert: "/m/c",
      tlsKey: "/m/k",
    });
  });

  it("names the unknown context, where it came from, and the known ones", () => {
    expect(() => resolved(["list", "--context", "nope"])).toThrow(UnknownContextError);
    expect(() => resolved(["list"], { ATOLL_DEPLOY_CONTEXT: "nope" })).toThrow(
      'unknown context "nope" (from ATOLL_DEPLOY_CONTEXT); known: a, cur',
    );
  });

  it.each([
    [["list", "--server", "s:1", "--context", "a"], "--server and --context name two servers"],
    [
      ["list", "--all-contexts", "--server", "s:1"],
      "--all-contexts uses each context's own settings: drop --server",
    ],
    [["watch", "--all-contexts", "--token-file", "t"], "drop --token-file"],
    [["status", "x", "--all-contexts"], "Unknown option '--all-contexts'"],
  ])("refuses %j as a usage error", (argv, message) => {
    const line = parseCommandLine(argv, {});
    expect(line.kind).toBe("usage-error");
    expect(line.kind === "usage-error" && line.message).toContain(message);
  });

  it("parses --all-contexts of list and watch", () => {
    const line = parseCommandLine(["watch", "x", "--all-contexts"], {});
    expect(line.kind === "client" && line.command).toEqual({
      name: "watch",
      agents: ["x"],
      maxRetries: 8,
      allContexts: true,
    });
  });
});

describe("parsing context and render", () => {
  it("parses the four context actions", () => {
    expect(parseCommandLine(["context", "list", "--json"], {})).toEqual({
      kind: "context",
      command: { action: "list", json: true },
    });
    expect(parseCommandLine(["context", "use", "a"], {})).toEqual({
      kind: "context",
      command: { action: "use", name: "a" },
    });
    expect(
      parseCommandLine(["context", "add", "a", "--server", "h:1", "--token-file", "t"], {}),
    ).toEqual({
      kind: "context",
      command: {
        action: "add",
        name: "a",
        server: "h:1",
        tokenFile: "t",
        tlsCa: undefined,
        tlsCert: undefined,
        tlsKey: undefined,
      },
    });
    expect(parseCommandLine(["context", "remove", "a"], {})).toMatchObject({
      command: { action: "remove", name: "a" },
    });
  });

  it.each([
    [["context"], "missing action"],
    [["context", "add", "a"], "--server ADDR is required"],
    [["context", "use"], "missing context name"],
    [["context", "use", "a", "--server", "h:1"], "--server belongs to context add"],
    [["context", "frob"], 'unknown action "frob"'],
    [["render", "--image", ""], "--image is empty"],
  ])("refuses %j", (argv, message) => {
    const line = parseCommandLine(argv, {});
    expect(line.kind === "usage-error" && line.message).toContain(message);
  });

  it("parses render's names and flags, the agents directory from the environment", () => {
    expect(
      parseCommandLine(["render", "a", "b", "--namespace", "ns", "--image", "img:1"], {
        ATOLL_DEPLOY_AGENTS_DIRECTORY: "/srv/agents",
      }),
    ).toEqual({
      kind: "render",
      command: { names: ["a", "b"], namespace: "ns", image: "img:1", agentsDir: "/srv/agents" },
    });
    expect(parseCommandLine(["render", "--agents-dir", "x"], {})).toMatchObject({
      command: { names: [], agentsDir: "x", namespace: undefined },
    });
  });
});
