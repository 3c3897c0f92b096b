import type { AgentSlots } from "./runner-deps.ts";

/** `max_agents` as a pool of named slots; reservation is synchronous, so never overshoots. */
export class SlotPool implements AgentSlots {
  readonly limit: number;
  readonly #owners = new Set<string>();

  constructor(limit: number) {
    this.limit = limit;
  }

  tryReserve(owner: string): boolean {
    if (this.#owners.has(owner)) return true;
    if (this.#owners.size >= this.limit) return false;
    this.#owners.add(owner);
    return true;
  }

  release(owner: string): void {
    this.#owners.delete(owner);
  }

  get used(): number {
    return this.#owners.size;
  }
}
