/**
 * The agent's LLM: the built-in `echo` model, or an Ollama server's `POST /api/generate`
 * (non-streaming).
 */
import { ECHO_MODEL, type EffectiveLlmSettings } from "./ollama-config.ts";

/**
 * Why a generation failed: `unreachable` (no connection; HTTP 502), `bad-response` (non-2xx or
 * not the expected JSON; 502), `timeout` (no full answer within the timeout; 504), `cancelled`
 * (the caller aborted, e.g. the HTTP client went away).
 */
export type LlmErrorKind = "unreachable" | "bad-response" | "timeout" | "cancelled";

export class LlmError extends Error {
  override readonly name = "LlmError";
  readonly kind: LlmErrorKind;
  constructor(kind: LlmErrorKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

export interface LlmClient {
  /** The model reported in `/status` and in every `/prompt` answer. */
  readonly model: string;
  /**
   * Answers `prompt`. `signal` aborts the call (then it rejects with kind `cancelled`).
   * @throws LlmError
   */
  generate(prompt: string, signal?: AbortSignal): Promise<string>;
}

/** Answer of the `echo` model: the prompt, prefixed with the agent name in brackets. */
export function echoAnswer(agentName: string, prompt: string): string {
  return `[${agentName}] ${prompt}`;
}

/**
 * Builds the client for `settings.model`: `echo` answers locally; any other model goes to
 * `{settings.baseUrl}/api/generate` with `{model, prompt, system, stream: false,
 * options: {temperature}}` (`system` and `options` only when set), bounded by
 * `settings.timeoutMs`.
 */
export function createLlmClient(
  settings: EffectiveLlmSettings,
  agentName: string,
  fetchImpl: typeof fetch = fetch,
): LlmClient {
  if (settings.model === ECHO_MODEL) {
    return {
      model: ECHO_MODEL,
      generate: async (prompt, signal) => {
        if (signal?.aborted) throw new LlmError("cancelled", "request cancelled");
        return echoAnswer(agentName, prompt);
      },
    };
  }
  const endpoint = `${settings.baseUrl}/api/generate`;
  return {
    model: settings.model,
    generate: (prompt, signal) => generateWithOllama(fetchImpl, endpoint, settings, prompt, signal),
  };
}

async function generateWithOllama(
  fetchImpl: typeof fetch,
  endpoint: string,
  settings: EffectiveLlmSettings,
  prompt: string,
  callerSignal: AbortSignal | undefined,
): Promise<string> {
  const body: Record<string, unknown> = { model: settings.model, prompt, stream: false };
  if (settings.systemPrompt !== undefined) body.system = settings.systemPrompt;
  if (settings.temperature !== undefined) body.options = { temperature: settings.temperature };

  const timeoutSignal = AbortSignal.timeout(settings.timeoutMs);
  const signal = callerSignal ? AbortSignal.any([callerSignal, timeoutSignal]) : timeoutSignal;
  // Classifies an abort or network failure from either the request or the body read.
  const failure = (cause: unknown, during: string): LlmError => {
    if (timeoutSignal.aborted) {
      return new LlmError(
        "timeout",
        `LLM did not answer within ${settings.timeoutMs / 1000} s (${settings.baseUrl})`,
        { cause },
      );
    }
    if (callerSignal?.aborted) return new LlmError("cancelled", "request cancelled", { cause });
    const detail = describeNetworkError(cause);
    return new LlmError("unreachable", `LLM server ${during} at ${settings.baseUrl}: ${detail}`, {
      cause,
    });
  };

  let response: Response;
  try {
    response = await fetchImpl(endpoint, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  } catch (cause) {
    throw failure(cause, "unreachable");
  }
  let text: string;
  try {
    text = await response.text();
  } catch (cause) {
    throw failure(cause, "connection failed");
  }

  if (!response.ok) {
    throw new LlmError(
      "bad-response",
      `LLM server answered HTTP ${response.status}: ${ollamaErrorText(text)}`,
    );
  }
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    // The body is not JSON: reported as a bad answer below with a snippet.
    answer = undefined;
  }
  const generated =
    typeof answer === "object" && answer !== null
      ? (answer as Record<string, unknown>).response
      : undefined;
  if (typeof generated !== "string") {
    throw new LlmError(
      "bad-response",
      `LLM server answer has no "response" string: ${snippet(text)}`,
    );
  }
  return generated;
}

/** Ollama reports failures as `{"error": "..."}`; fall back to a snippet of the body. */
function ollamaErrorText(text: string): string {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed === "object" && parsed !== null) {
      const error = (parsed as Record<string, unknown>).error;
      if (typeof error === "string" && error !== "") return error;
    }
  } catch {
    // Not JSON: use the raw text.
  }
  return snippet(text) || "(empty body)";
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}…` : flat;
}

/** fetch wraps socket errors as `TypeError("fetch failed", {cause})`; surface the code. */
function describeNetworkError(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current instanceof Error; depth++) {
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === "string") {
      return current.message.includes(code) ? current.message : `${code} ${current.message}`.trim();
    }
    if (current.cause === undefined) return current.message;
    current = current.cause;
  }
  return String(current);
}
