/**
 * The soak's daemon: `atoll-deploy serve` on a fixed loopback port and a fixed state dir, so it
 * can be SIGKILLed and started again as the same server; an exit the soak did not cause is a
 * violation. Samples the daemon's RSS.
 */
import { rssBytes } from "../lib/procfs.ts";
import { withTimeout } from "../lib/timing.ts";
import { AtollDaemon, type AtollDaemonOptions } from "../tools/atoll.ts";

export class SoakDaemon {
  readonly #options: AtollDaemonOptions & { readonly listen: string };
  #current: AtollDaemon | undefined;
  #expectExit = false;
  incarnations = 0;
  readonly unexpectedExits: string[] = [];
  /** RSS samples in bytes, per incarnation. */
  readonly rss: number[][] = [];

  constructor(options: AtollDaemonOptions & { readonly listen: string }) {
    this.#options = options;
  }

  get address(): string {
    return this.#options.listen;
  }

  get pid(): number {
    return this.#current?.pid ?? 0;
  }

  get running(): boolean {
    return this.#current?.running === true;
  }

  async start(): Promise<void> {
    const daemon = new AtollDaemon(this.#options);
    this.#current = daemon;
    this.#expectExit = false;
    this.incarnations += 1;
    this.rss.push([]);
    const incarnation = this.incarnations;
    void daemon.exited.then(({ code, signal }) => {
      if (!this.#expectExit && this.#current === daemon) {
        this.unexpectedExits.push(
          `daemon incarnation ${incarnation} exited by itself (${code ?? signal})`,
        );
      }
    });
    await withTimeout("atoll-deploy serve to listen", daemon.address, 60_000);
  }

  /** SIGKILL: the agents stay up in their own process groups, as after a crash of the daemon. */
  async kill(): Promise<void> {
    const daemon = this.#current;
    if (daemon === undefined) return;
    this.#expectExit = true;
    daemon.kill();
    await daemon.exited;
  }

  /** SIGTERM and wait (SIGKILL after `graceMs`); returns the exit status. */
  async shutdown(graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const daemon = this.#current;
    if (daemon === undefined) return { code: null, signal: null };
    this.#expectExit = true;
    return daemon.stop(graceMs);
  }

  sampleRss(): void {
    const bytes = this.running ? rssBytes(this.pid) : undefined;
    if (bytes !== undefined) this.rss[this.rss.length - 1]?.push(bytes);
  }
}
