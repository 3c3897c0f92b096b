/**
 * What a parsed `atoll-deploy` command line is: the commands and their arguments as data, the
 * client's connection options, and the defaults they start from. The options and commands that
 * can be written are in `command-options.ts`, the help built from them in `command-help.ts`.
 */

/**
 * Where the client connects when nothing says otherwise: no `--server`, `--context`,
 * `ATOLL_DEPLOY_CONTEXT`, `ATOLL_DEPLOY_SERVER`, nor a current context in the contexts file.
 */
export const DEFAULT_SERVER = "127.0.0.1:50051";
/** Time allowed to reach the server (and for quick queries to answer), seconds. */
export const DEFAULT_CONNECT_TIMEOUT_S = 5;
/** Lines `logs` shows when `-n` is not given. */
export const DEFAULT_LOG_LINES = 100;
/** Reconnection attempts of `watch` after a dropped stream before it gives up (exit 3). */
export const DEFAULT_WATCH_RETRIES = 8;

/**
 * Which server a client command talks to, as the command line and environment said; the
 * contexts file is read afterwards (`resolveClientOptions`), in this order of precedence:
 * `--server` > `--context` > `ATOLL_DEPLOY_CONTEXT` > `ATOLL_DEPLOY_SERVER` > the file's
 * `current` > DEFAULT_SERVER (docs/cli.md, "Contexts").
 */
export type ServerSelection =
  /** `--server` or `ATOLL_DEPLOY_SERVER`: this address, no context. */
  | { readonly kind: "address" }
  /** `--context NAME` or `ATOLL_DEPLOY_CONTEXT`. */
  | {
      readonly kind: "context";
      readonly name: string;
      readonly from: "--context" | "ATOLL_DEPLOY_CONTEXT";
    }
  /** Nothing given: the contexts file's current context, else DEFAULT_SERVER. */
  | { readonly kind: "current" };

/** Options every client command takes. */
export interface ClientOptions {
  /** `host:port` or `unix:/path`; DEFAULT_SERVER until a context is resolved. */
  readonly server: string;
  readonly selection: ServerSelection;
  /** The context the connection settings came from, once resolved; undefined for none. */
  readonly contextName: string | undefined;
  readonly tokenFile: string | undefined;
  readonly tlsCa: string | undefined;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  readonly json: boolean;
  readonly noColor: boolean;
  readonly connectTimeoutMs: number;
}

export type AgentOperation = "deploy" | "undeploy" | "restart";

export type ClientCommand =
  | {
      readonly name: AgentOperation;
      readonly agent: string;
      /** Deadline of the whole operation; none (the server bounds it) when undefined. */
      readonly timeoutMs: number | undefined;
    }
  | { readonly name: "status"; readonly agent: string }
  | { readonly name: "list"; readonly allContexts: boolean }
  | {
      readonly name: "watch";
      readonly agents: readonly string[];
      readonly maxRetries: number;
      readonly allContexts: boolean;
    }
  | {
      readonly name: "logs";
      readonly agent: string;
      readonly follow: boolean;
      readonly lines: number;
    }
  | {
      readonly name: "install";
      /** An agent directory (packed by the CLI) or a `.tar.gz` / `.zip` archive. */
      readonly path: string;
      readonly force: boolean;
      readonly start: boolean;
      /** Deadline of the whole install; none when undefined. */
      readonly timeoutMs: number | undefined;
    }
  | { readonly name: "remove"; readonly agent: string; readonly timeoutMs: number | undefined }
  | { readonly name: "shell" };

export type CommandName = ClientCommand["name"];

/** `atoll-deploy context ...`: edits or shows the contexts file; contacts no server. */
export type ContextAction =
  | { readonly action: "list"; readonly json: boolean }
  | { readonly action: "use"; readonly name: string }
  | {
      readonly action: "add";
      readonly name: string;
      readonly server: string;
      readonly tokenFile: string | undefined;
      readonly tlsCa: string | undefined;
      readonly tlsCert: string | undefined;
      readonly tlsKey: string | undefined;
    }
  | { readonly action: "remove"; readonly name: string };

/** `atoll-deploy render [name...]`: prints Kubernetes manifests; contacts no server. */
export interface RenderCommand {
  readonly names: readonly string[];
  readonly namespace: string | undefined;
  readonly image: string | undefined;
  /** As given (flag, else ATOLL_DEPLOY_AGENTS_DIRECTORY, else `./atoll_agents`); resolved against the working directory. */
  readonly agentsDir: string;
}

export type CommandLine =
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "context"; readonly command: ContextAction }
  | { readonly kind: "render"; readonly command: RenderCommand }
  | { readonly kind: "version" }
  | { readonly kind: "serve"; readonly argv: readonly string[] }
  | { readonly kind: "usage-error"; readonly message: string; readonly usage: string }
  | {
      readonly kind: "client";
      readonly command: ClientCommand;
      readonly options: ClientOptions;
    };
