/**
 * `StreamLogs` on the Kubernetes backend: the agent's container log from the API server, in
 * whole lines. Following goes on across container restarts and pod replacements: each next
 * container is followed from its start.
 */
import type { LogStreamOptions } from "../core/agent-backend.ts";
import type { Logger } from "../core/logger.ts";
import type { ClusterClient } from "./cluster-client.ts";
import { CONTAINER_NAME } from "./render-pod.ts";

export interface AgentLogSource {
  readonly client: Pick<ClusterClient, "podLog">;
  readonly logger: Logger;
  /** The agent's current pod, "" when it has none. */
  readonly instance: () => string;
  /** False once the agent is gone (no definition, no objects on the cluster). */
  readonly known: () => boolean;
  /** Resolves with the agent's next pod after `previous` (a restart counts), or "" on abort. */
  readonly nextInstance: (previous: string, signal: AbortSignal) => Promise<string>;
}

/** The agent's log lines in batches, as `AgentBackend.streamLogs` promises. */
export async function* agentLogLines(
  source: AgentLogSource,
  options: LogStreamOptions,
): AsyncIterable<readonly string[]> {
  let tail = options.tailLines;
  let pod = source.instance();
  let partial = "";
  for (;;) {
    if (pod !== "") {
      try {
        for await (const chunk of source.client.podLog(pod, {
          container: CONTAINER_NAME,
          tailLines: tail,
          follow: options.follow,
          signal: options.signal,
        })) {
          const lines = (partial + chunk).split("\n");
          partial = lines.pop() ?? "";
          if (lines.length > 0) yield lines;
        }
      } catch (error) {
        source.logger.debug("pod log ended", { pod, error: String(error) });
      }
    }
    if (!options.follow || options.signal.aborted || !source.known()) break;
    // The container restarted or the pod was replaced: follow the next one from its start.
    pod = await source.nextInstance(pod, options.signal);
    tail = 0;
    if (options.signal.aborted) break;
  }
  if (partial !== "") yield [partial];
}
