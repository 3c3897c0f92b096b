/**
 * One operation per agent name at a time in the package store. Installs and removes do not
 * queue: a second one fails at once with INSTALL_IN_PROGRESS, so two installs of one name never
 * interleave and the loser learns it before it writes anything. Collections of old versions are
 * quick and run between operations: an install waits for one to finish, and a collection asked
 * for while an install or remove holds the name runs when it is released.
 */
import { runInBackground } from "../core/background-task.ts";
import { DeployError } from "../core/errors.ts";
import type { Logger } from "../core/logger.ts";

/** What holds a name. */
export type NameOperation = "install" | "remove" | "collect";

interface Held {
  readonly operation: NameOperation;
  readonly done: Promise<void>;
}

export class NameLocks {
  readonly #held = new Map<string, Held>();
  readonly #collectLater = new Set<string>();
  readonly #collect: (name: string) => Promise<void>;
  readonly #logger: Logger;

  /**
   * @param collect runs a collection of `name` (called with the name held).
   * @param logger where a deferred collection's failure is logged (the old versions then stay
   *   until the next collection of the name).
   */
  constructor(collect: (name: string) => Promise<void>, logger: Logger) {
    this.#collect = collect;
    this.#logger = logger;
  }

  /**
   * Runs `work` holding `name`.
   * @throws DeployError INSTALL_IN_PROGRESS when an install or remove holds it.
   */
  async hold<T>(name: string, operation: NameOperation, work: () => Promise<T>): Promise<T> {
    for (;;) {
      const held = this.#held.get(name);
      if (held === undefined) break;
      if (held.operation !== "collect") {
        throw new DeployError(
          "INSTALL_IN_PROGRESS",
          `another ${held.operation} of agent ${name} is under way; try again when it has finished`,
          { agent: name },
        );
      }
      await held.done;
    }
    let release: () => void = () => {};
    this.#held.set(name, { operation, done: new Promise<void>((resolve) => (release = resolve)) });
    try {
      return await work();
    } finally {
      this.#held.delete(name);
      release();
      if (this.#collectLater.delete(name)) {
        runInBackground(
          { logger: this.#logger, fields: { agent: name } },
          "collect old package versions",
          () => this.collect(name),
        );
      }
    }
  }

  /**
   * Collects `name` now, or, when an install or remove holds it, once that is released.
   * Rejects only with what the collection threw.
   */
  async collect(name: string): Promise<void> {
    if (this.#held.has(name)) {
      this.#collectLater.add(name);
      return;
    }
    await this.hold(name, "collect", () => this.#collect(name));
  }
}
