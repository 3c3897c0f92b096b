/** Runs one client command (every command but `shell`, which runs these in a loop). */

import type { ClientCommand } from "./command-line.ts";
import { deploy, restart, undeploy } from "./commands/agent-operation.ts";
import { install, remove } from "./commands/install.ts";
import { list } from "./commands/list.ts";
import { logs } from "./commands/logs.ts";
import { status } from "./commands/status.ts";
import { watch } from "./commands/watch.ts";
import type { CommandContext } from "./context.ts";

export type SingleCommand = Exclude<ClientCommand, { readonly name: "shell" }>;

/** Runs `command` with `ctx`; resolves with its exit status (never rejects for RPC failures). */
export function runCommand(ctx: CommandContext, command: SingleCommand): Promise<number> {
  switch (command.name) {
    case "deploy":
      return deploy(ctx, command.agent, command.timeoutMs);
    case "undeploy":
      return undeploy(ctx, command.agent, command.timeoutMs);
    case "restart":
      return restart(ctx, command.agent, command.timeoutMs);
    case "status":
      return status(ctx, command.agent);
    case "list":
      return list(ctx);
    case "watch":
      return watch(ctx, command.agents, command.maxRetries);
    case "logs":
      return logs(ctx, command.agent, command.lines, command.follow);
    case "install":
      return install(ctx, command);
    case "remove":
      return remove(ctx, command.agent, command.timeoutMs);
  }
}
