/**
 * The log panel: follows one agent's output with `StreamLogs` (the last lines, then new ones as
 * they are written), keeps the newest lines in view, and reconnects after a dropped stream. Only
 * one agent at a time; choosing another ends the previous stream.
 */
import { runInBackground } from "../core/background-task.ts";
import type { DeploymentClient } from "./api.ts";
import { describeError, isCanceled, isUnauthenticated } from "./api.ts";

/** Lines kept on the page; older ones scroll away. */
const MAX_LINES = 2000;
/** Lines asked for when the panel opens. */
const TAIL_LINES = 200;

export interface LogsElements {
  readonly panel: HTMLElement;
  readonly title: HTMLElement;
  readonly status: HTMLElement;
  readonly output: HTMLElement;
  readonly close: HTMLButtonElement;
}

export class LogsView {
  readonly #client: DeploymentClient;
  readonly #el: LogsElements;
  readonly #askToken: () => Promise<void>;
  #lines: string[] = [];
  #follow: AbortController | undefined;
  #agent: string | undefined;
  #renderQueued = false;

  constructor(client: DeploymentClient, elements: LogsElements, askToken: () => Promise<void>) {
    this.#client = client;
    this.#el = elements;
    this.#askToken = askToken;
    elements.close.addEventListener("click", () => this.close());
  }

  /** The agent being followed. */
  get agent(): string | undefined {
    return this.#agent;
  }

  /** Opens the panel on `name` (or closes it when it already shows `name`). */
  toggle(name: string): void {
    if (this.#agent === name) this.close();
    else this.open(name);
  }

  open(name: string): void {
    this.#follow?.abort();
    this.#agent = name;
    this.#lines = [];
    this.#el.title.textContent = name;
    this.#el.output.textContent = "";
    this.#el.panel.hidden = false;
    const follow = new AbortController();
    this.#follow = follow;
    runInBackground(
      {
        // Not expected (every stream failure is retried in #run): shown where the user looks.
        onFailure: (_task, error) => {
          if (!follow.signal.aborted)
            this.#setStatus(`Log stream stopped: ${describeError(error)}`);
        },
      },
      "follow the log",
      () => this.#run(name, follow.signal),
    );
    this.#el.close.focus();
  }

  close(): void {
    this.#follow?.abort();
    this.#follow = undefined;
    this.#agent = undefined;
    this.#el.panel.hidden = true;
  }

  async #run(name: string, signal: AbortSignal): Promise<void> {
    let retryMs = 500;
    let first = true;
    while (!signal.aborted) {
      this.#setStatus(first ? "Loading…" : "Reconnecting…");
      try {
        // After a reconnect, no tail: the lines already shown are not repeated.
        const stream = this.#client.streamLogs(
          { name, tailLines: first ? TAIL_LINES : 0, follow: true },
          { signal },
        );
        this.#setStatus("Following");
        for await (const batch of stream) {
          retryMs = 500;
          this.#append(batch.lines);
        }
        if (signal.aborted) return;
        this.#setStatus("The stream ended; reconnecting…");
      } catch (error) {
        if (signal.aborted || isCanceled(error)) return;
        if (isUnauthenticated(error)) {
          await this.#askToken();
          continue;
        }
        this.#setStatus(`Log stream failed: ${describeError(error)}. Retrying…`);
      }
      first = false;
      await new Promise((resolve) => setTimeout(resolve, retryMs));
      retryMs = Math.min(retryMs * 2, 5000);
    }
  }

  #setStatus(text: string): void {
    if (this.#el.status.textContent !== text) this.#el.status.textContent = text;
  }

  #append(lines: readonly string[]): void {
    if (lines.length === 0) return;
    this.#lines.push(...lines);
    if (this.#lines.length > MAX_LINES) this.#lines.splice(0, this.#lines.length - MAX_LINES);
    if (this.#renderQueued) return;
    this.#renderQueued = true;
    // One DOM write per frame however fast lines arrive.
    requestAnimationFrame(() => {
      this.#renderQueued = false;
      const output = this.#el.output;
      const atBottom = output.scrollHeight - output.scrollTop - output.clientHeight < 40;
      output.textContent = this.#lines.join("\n");
      if (atBottom) output.scrollTop = output.scrollHeight;
    });
  }
}
