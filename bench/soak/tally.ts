/**
 * Outcomes of every RPC the soak made, by method and status code. The codes a client must
 * expect under this chaos are fine; INTERNAL and UNKNOWN are violations (the server hid a bug).
 */
import { status } from "@grpc/grpc-js";
import { RpcError } from "../../src/rpc/grpc-client.ts";

const UNEXPECTED: readonly number[] = [
  status.INTERNAL,
  status.UNKNOWN,
  status.UNIMPLEMENTED,
  status.DATA_LOSS,
];

export class RpcTally {
  readonly #counts = new Map<string, number>();
  readonly unexpected: string[] = [];

  /** Runs `call` and counts its outcome under `method`; never throws. */
  async run<T>(method: string, call: () => Promise<T>): Promise<T | undefined> {
    try {
      const result = await call();
      this.#add(`${method} OK`);
      return result;
    } catch (error) {
      const rpc = RpcError.from(error);
      const name = status[rpc.code] ?? String(rpc.code);
      this.#add(`${method} ${name}${rpc.reason === undefined ? "" : ` ${rpc.reason}`}`);
      if (UNEXPECTED.includes(rpc.code) && this.unexpected.length < 20) {
        this.unexpected.push(`${method}: ${name} ${rpc.details}`);
      }
      return undefined;
    }
  }

  #add(key: string): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  get total(): number {
    let n = 0;
    for (const v of this.#counts.values()) n += v;
    return n;
  }

  /** "Deploy OK 120, Deploy FAILED_PRECONDITION AGENT_EXITED_DURING_START 3, ..." sorted. */
  lines(): string[] {
    return [...this.#counts.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}: ${v}`);
  }
}
