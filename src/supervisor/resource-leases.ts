/**
 * Performs the machine's resource effects: a `max_agents` slot (answered at once, since the pool
 * is synchronous and so never overshoots) and a port lease (answered when the allocator has
 * checked the port). A refusal comes back as the failure to tell the caller.
 */
import type { AgentDefinition } from "../config/agent-definition.ts";
import { type BackgroundScope, runInBackground } from "../core/background-task.ts";
import { isDeployError } from "../core/errors.ts";
import type { LifecycleEvent } from "../core/lifecycle-events.ts";
import type { RunnerDeps } from "./runner-deps.ts";

export class ResourceLeases {
  readonly #name: string;
  readonly #deps: RunnerDeps;
  readonly #scope: BackgroundScope;
  readonly #dispatch: (event: LifecycleEvent<AgentDefinition>) => void;

  constructor(
    name: string,
    deps: RunnerDeps,
    scope: BackgroundScope,
    dispatch: (event: LifecycleEvent<AgentDefinition>) => void,
  ) {
    this.#name = name;
    this.#deps = deps;
    this.#scope = scope;
    this.#dispatch = dispatch;
  }

  reserveSlot(): void {
    const { slots } = this.#deps;
    if (slots.tryReserve(this.#name)) {
      this.#dispatch({ type: "slotReserved" });
      return;
    }
    this.#dispatch({
      type: "slotRefused",
      failure: {
        code: "MAX_AGENTS_REACHED",
        message: `cannot start ${this.#name}: max_agents (${slots.limit}) agents are live`,
        metadata: { agent: this.#name },
      },
    });
  }

  releaseSlot(): void {
    this.#deps.slots.release(this.#name);
  }

  /** `fixedPort` 0: the lowest free port (or the one already held). */
  leasePort(fixedPort: number): void {
    const { ports } = this.#deps;
    runInBackground(
      this.#scope,
      "lease port",
      async () => {
        try {
          const port = await (fixedPort !== 0
            ? ports.leaseFixed(this.#name, fixedPort)
            : ports.lease(this.#name));
          return { port };
        } catch (error) {
          // Anything but a refusal (NO_FREE_PORT, PORT_UNAVAILABLE) is a supervisor error.
          if (!isDeployError(error)) throw error;
          return {
            failure: { code: error.code, message: error.message, metadata: error.metadata },
          };
        }
      },
      (result) =>
        this.#dispatch(
          "port" in result
            ? { type: "leaseGranted", port: result.port }
            : { type: "leaseRefused", failure: result.failure },
        ),
    );
  }

  releasePort(): void {
    this.#deps.ports.release(this.#name);
  }
}
