/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The dashboard (SPEC §9 `GET /`), a client of the HTTP listener's API like any other: it keeps a live
 * table from `WatchHealth` (snapshot, then changes; after a dropped stream it resumes after the
 * last revision it saw, and takes a fresh snapshot when the server sends one), acts through
 * Deploy / Undeploy / Restart, and follows one agent's output in the log panel. With a token
 * configured on the server, the first refused call opens the token dialog; the token is then
 * kept for the tab's session.
 *
 * The `dom` lib references above type this browser code; the server code does not use the DOM.
 */
import type { Agent } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import { WatchEventType } from "../../gen/atoll/deployment/v1/deployment_service_pb.ts";
import { runInBackground } from "../core/background-task.ts";
import { type AgentAction, AgentsView } from "./agents-view.ts";
import {
  createDeploymentClient,
  describeError,
  isCanceled,
  isUnauthenticated,
  storedToken,
  storeToken,
} from "./api.ts";
import { LogsView } from "./logs-view.ts";

function byId<T extends HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`the page has no #${id}`);
  return node as T;
}

const client = createDeploymentClient();
const connection = byId<HTMLElement>("connection");

function setConnection(state: "connecting" | "live" | "offline", text: string): void {
  connection.dataset.state = state;
  if (connection.textContent !== text) connection.textContent = text;
}

// --- the token dialog -------------------------------------------------------------------------

const dialog = byId<HTMLDialogElement>("token-dialog");
const tokenForm = byId<HTMLFormElement>("token-form");
const tokenInput = byId<HTMLInputElement>("token-input");
const tokenError = byId<HTMLElement>("token-error");
let tokenWanted: Promise<void> | undefined;
let resolveToken: (() => void) | undefined;

/**
 * Opens the token dialog (once, however many calls were refused at the same time) and resolves
 * when a token has been entered. A refused token is forgotten first.
 */
function askToken(): Promise<void> {
  if (tokenWanted !== undefined) return tokenWanted;
  const rejected = storedToken() !== undefined;
  storeToken(undefined);
  tokenError.textContent = rejected ? "The server did not accept that token." : "";
  tokenError.hidden = !rejected;
  tokenInput.value = "";
  tokenWanted = new Promise<void>((resolve) => {
    resolveToken = resolve;
  });
  if (!dialog.open) dialog.showModal();
  tokenInput.focus();
  return tokenWanted;
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = tokenInput.value.trim();
  if (token === "") {
    tokenError.textContent = "Enter the token.";
    tokenError.hidden = false;
    return;
  }
  storeToken(token);
  dialog.close();
  const resolve = resolveToken;
  tokenWanted = undefined;
  resolveToken = undefined;
  resolve?.();
});
// Escape would close the dialog with nothing entered: keep asking, the page is useless without.
dialog.addEventListener("cancel", (event) => event.preventDefault());

// --- the table and its actions ----------------------------------------------------------------

const logs = new LogsView(
  client,
  {
    panel: byId("logs"),
    title: byId("logs-agent"),
    status: byId("logs-status"),
    output: byId("logs-output"),
    close: byId<HTMLButtonElement>("logs-close"),
  },
  askToken,
);

async function act(name: string, action: AgentAction, button: HTMLButtonElement): Promise<void> {
  if (action === "logs") {
    logs.toggle(name);
    return;
  }
  const label = button.dataset.label ?? button.textContent ?? "";
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = button.dataset.busy ?? label;
  view.showError(name, "");
  try {
    for (;;) {
      try {
        const response = await client[action]({ name });
        if (response.agent !== undefined) view.upsert(response.agent);
        return;
      } catch (error) {
        if (!isUnauthenticated(error)) throw error;
        await askToken();
      }
    }
  } catch (error) {
    view.showError(name, `${label} refused: ${describeError(error)}`);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = label;
  }
}

const view = new AgentsView(
  byId<HTMLTableElement>("agents"),
  byId("summary"),
  byId("empty"),
  (name, action, button) =>
    runInBackground(
      // act shows a refusal itself; anything else it throws is shown on the agent's row.
      { onFailure: (_task, error) => view.showError(name, `${action}: ${describeError(error)}`) },
      action,
      () => act(name, action, button),
    ),
);

// --- live updates -----------------------------------------------------------------------------

/** Follows WatchHealth forever: resumes after the last revision seen, backs off while offline. */
async function watch(): Promise<void> {
  let revision = 0n;
  let retryMs = 250;
  for (;;) {
    const snapshot: Agent[] = [];
    try {
      setConnection("connecting", revision === 0n ? "Connecting…" : "Reconnecting…");
      for await (const event of client.watchHealth({ resumeAfterRevision: revision })) {
        retryMs = 250;
        switch (event.type) {
          case WatchEventType.SNAPSHOT:
            if (event.agent !== undefined) snapshot.push(event.agent);
            break;
          case WatchEventType.SNAPSHOT_COMPLETE:
            view.replaceAll(snapshot);
            snapshot.length = 0;
            revision = event.revision;
            setConnection("live", "Live");
            document.body.dataset.ready = "true";
            break;
          case WatchEventType.CHANGE:
            if (event.agent !== undefined) view.upsert(event.agent);
            revision = event.revision;
            setConnection("live", "Live");
            break;
          case WatchEventType.REMOVED:
            if (event.agent !== undefined) view.remove(event.agent.name);
            if (event.agent?.name === logs.agent) logs.close();
            revision = event.revision;
            break;
          default:
            // HEARTBEAT: the stream is alive; nothing changed.
            setConnection("live", "Live");
        }
      }
      setConnection("offline", "Connection closed by the server; reconnecting…");
    } catch (error) {
      if (isUnauthenticated(error)) {
        setConnection("offline", "Token required");
        await askToken();
        continue;
      }
      if (!isCanceled(error)) {
        setConnection("offline", `Disconnected: ${describeError(error)}; reconnecting…`);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, retryMs));
    retryMs = Math.min(retryMs * 2, 5000);
  }
}

setInterval(() => view.tick(Date.now()), 1000);
runInBackground(
  {
    // watch() retries every stream failure itself and never ends; should it still fail, the
    // page says that it no longer updates.
    onFailure: (_task, error) =>
      setConnection("offline", `Updates stopped: ${describeError(error)}; reload the page`),
  },
  "watch",
  watch,
);
