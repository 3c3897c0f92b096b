/**
 * The agents table: one row per agent, sorted by name, built once per agent and then updated
 * cell by cell (text only) as changes arrive, so a live page costs little however often its
 * agents change. Rows carry `data-agent` and `data-state` for styling and tests; every button is a
 * real `<button>` whose accessible name includes the agent's name.
 */
import type { Agent } from "../../gen/atoll/deployment/v1/agent_pb.ts";
import {
  describeReason,
  formatBytes,
  formatNumber,
  formatRestarts,
  formatUptime,
  healthName,
  isLive,
  stateName,
  summarize,
} from "./format.ts";

/** The operations a row's buttons ask for. */
export type AgentAction = "deploy" | "undeploy" | "restart" | "logs";

const ACTIONS: readonly { action: AgentAction; label: string; busy: string }[] = [
  { action: "deploy", label: "Deploy", busy: "Deploying…" },
  { action: "undeploy", label: "Undeploy", busy: "Stopping…" },
  { action: "restart", label: "Restart", busy: "Restarting…" },
  { action: "logs", label: "Logs", busy: "Logs" },
];

/** Column headers, also each cell's `data-label` for the stacked phone layout. */
const COLUMNS = [
  "State",
  "Health",
  "Port",
  "PID",
  "Restarts",
  "Uptime",
  "Memory",
  "Reason",
] as const;

interface Row {
  agent: Agent;
  readonly tr: HTMLTableRowElement;
  readonly state: HTMLSpanElement;
  readonly cells: Readonly<Record<(typeof COLUMNS)[number], HTMLTableCellElement>>;
  readonly buttons: Readonly<Record<AgentAction, HTMLButtonElement>>;
  readonly error: HTMLParagraphElement;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className !== undefined) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Sets a node's text only when it changed (no needless layout work on every event). */
function setText(node: Node, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

export class AgentsView {
  readonly #body: HTMLTableSectionElement;
  readonly #summary: HTMLElement;
  readonly #empty: HTMLElement;
  readonly #rows = new Map<string, Row>();
  readonly #onAction: (name: string, action: AgentAction, button: HTMLButtonElement) => void;

  constructor(
    table: HTMLTableElement,
    summary: HTMLElement,
    empty: HTMLElement,
    onAction: (name: string, action: AgentAction, button: HTMLButtonElement) => void,
  ) {
    const body = table.tBodies[0];
    if (body === undefined) throw new Error("the agents table has no tbody");
    this.#body = body;
    this.#summary = summary;
    this.#empty = empty;
    this.#onAction = onAction;
  }

  /** Names in table order. */
  get names(): string[] {
    return [...this.#rows.keys()];
  }

  /** Replaces every row with `agents` (a snapshot), keeping the rows of agents still there. */
  replaceAll(agents: readonly Agent[]): void {
    const wanted = new Set(agents.map((a) => a.name));
    for (const name of [...this.#rows.keys()]) if (!wanted.has(name)) this.remove(name);
    const fragment = document.createDocumentFragment();
    const sorted = [...agents].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const agent of sorted) {
      const row = this.#rows.get(agent.name) ?? this.#createRow(agent);
      this.#update(row, agent);
      fragment.append(row.tr);
    }
    this.#body.replaceChildren(fragment);
    this.#refreshSummary();
  }

  /** Adds or updates one agent's row. */
  upsert(agent: Agent): void {
    let row = this.#rows.get(agent.name);
    if (row === undefined) {
      row = this.#createRow(agent);
      const next = [...this.#rows.keys()].sort().find((name) => name > agent.name);
      const before = next === undefined ? null : (this.#rows.get(next)?.tr ?? null);
      this.#body.insertBefore(row.tr, before);
    }
    this.#update(row, agent);
    this.#refreshSummary();
  }

  remove(name: string): void {
    const row = this.#rows.get(name);
    if (row === undefined) return;
    row.tr.remove();
    this.#rows.delete(name);
    this.#refreshSummary();
  }

  /** Shows (or, with "", clears) an error under the agent's buttons. */
  showError(name: string, message: string): void {
    const row = this.#rows.get(name);
    if (row === undefined) return;
    setText(row.error, message);
    row.error.hidden = message === "";
  }

  /** Moves every uptime forward; called once a second. */
  tick(nowMs: number): void {
    for (const row of this.#rows.values()) {
      setText(row.cells.Uptime, formatUptime(row.agent, nowMs));
    }
  }

  #createRow(agent: Agent): Row {
    const tr = element("tr");
    tr.dataset.agent = agent.name;
    const nameCell = element("th", "name");
    nameCell.scope = "row";
    nameCell.append(element("span", "agent-name", agent.name));
    tr.append(nameCell);
    const cells = {} as Record<(typeof COLUMNS)[number], HTMLTableCellElement>;
    for (const column of COLUMNS) {
      const td = element("td", `col-${column.toLowerCase()}`);
      td.dataset.label = column;
      cells[column] = td;
      tr.append(td);
    }
    const state = element("span", "state");
    cells.State.append(state);
    const actionsCell = element("td", "col-actions");
    const group = element("div", "buttons");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", `Actions for ${agent.name}`);
    const buttons = {} as Record<AgentAction, HTMLButtonElement>;
    for (const { action, label, busy } of ACTIONS) {
      const button = element("button", `action action-${action}`, label);
      button.type = "button";
      button.dataset.action = action;
      button.dataset.label = label;
      button.dataset.busy = busy;
      button.setAttribute("aria-label", `${label} ${agent.name}`);
      button.addEventListener("click", () => this.#onAction(agent.name, action, button));
      buttons[action] = button;
      group.append(button);
    }
    const error = element("p", "error");
    error.setAttribute("role", "alert");
    error.hidden = true;
    actionsCell.append(group, error);
    tr.append(actionsCell);
    const row: Row = { agent, tr, state, cells, buttons, error };
    this.#rows.set(agent.name, row);
    return row;
  }

  #update(row: Row, agent: Agent): void {
    row.agent = agent;
    const state = stateName(agent.state);
    if (row.tr.dataset.state !== state) {
      row.tr.dataset.state = state;
      row.state.className = `state state-${state}`;
      setText(row.state, state);
    }
    const health = healthName(agent.health);
    row.tr.dataset.health = health;
    setText(row.cells.Health, health);
    setText(row.cells.Port, formatNumber(agent.port));
    setText(row.cells.PID, formatNumber(agent.pid));
    setText(row.cells.Restarts, formatRestarts(agent));
    setText(row.cells.Uptime, formatUptime(agent, Date.now()));
    setText(row.cells.Memory, formatBytes(agent.memoryBytes));
    setText(row.cells.Reason, describeReason(agent));
    row.cells.Reason.title = agent.configPath;
    row.tr.classList.toggle("live", isLive(agent.state));
  }

  #refreshSummary(): void {
    setText(this.#summary, summarize([...this.#rows.values()].map((row) => row.agent)));
    this.#empty.hidden = this.#rows.size > 0;
  }
}
