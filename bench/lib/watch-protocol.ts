/** Messages between the harness and a watch-client child process (bench/lib/watch-client.ts). */

export type ToClient =
  /** Open `streams` WatchHealth streams (all agents) spread over `channels` connections. */
  | {
      readonly type: "open";
      readonly address: string;
      readonly streams: number;
      readonly channels: number;
    }
  /** From now on, time the first CHANGE of `target` leaving RUNNING on every stream. */
  | { readonly type: "arm"; readonly round: number; readonly target: string }
  /** Report the arrivals of `round` now, complete or not. */
  | { readonly type: "collect"; readonly round: number }
  /** Close every stream and report the totals. */
  | { readonly type: "close" };

export interface StreamTotals {
  /** Streams that were open when asked to close. */
  readonly open: number;
  /** CHANGE/REMOVED events received. */
  readonly changes: number;
  /** Times a CHANGE revision was not the previous one + 1 (a lost or coalesced event). */
  readonly gaps: number;
  /** Streams that ended with an error, by gRPC status text. */
  readonly errors: Readonly<Record<string, number>>;
  /** Times a stream re-opened (resuming after its last revision) after an error. */
  readonly reconnects: number;
}

export type FromClient =
  | {
      readonly type: "ready";
      readonly opened: number;
      readonly failed: number;
      readonly firstError?: string;
    }
  | { readonly type: "armed"; readonly round: number }
  /** Wall-clock receive times (ms since the epoch) of the timed event, one per stream that saw it. */
  | {
      readonly type: "arrivals";
      readonly round: number;
      readonly times: readonly number[];
      readonly missing: number;
    }
  | { readonly type: "closed"; readonly totals: StreamTotals };
