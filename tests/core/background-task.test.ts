import { describe, expect, it } from "vitest";
import { runInBackground } from "../../src/core/background-task.ts";
import type { LogFields, Logger } from "../../src/core/logger.ts";

interface Line {
  readonly level: string;
  readonly msg: string;
  readonly fields: LogFields | undefined;
}

function recordingLogger(): Logger & { readonly lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: string) =>
    (msg: string, fields?: LogFields): void => {
      lines.push({ level, msg, fields });
    };
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** Resolves with the next failure handed to `onFailure`. */
function nextFailure(): {
  readonly onFailure: (task: string, error: unknown) => void;
  readonly failed: Promise<{ task: string; error: unknown }>;
} {
  let resolve: (value: { task: string; error: unknown }) => void = () => {};
  const failed = new Promise<{ task: string; error: unknown }>((r) => (resolve = r));
  return { onFailure: (task, error) => resolve({ task, error }), failed };
}

describe("runInBackground", () => {
  it("hands the work's result to onResult", async () => {
    const result = await new Promise<number>((resolve) => {
      runInBackground(
        { onFailure: () => {} },
        "answer",
        async () => 42,
        (value) => resolve(value),
      );
    });
    expect(result).toBe(42);
  });

  it("logs a rejection with the scope's fields and the task, then calls onFailure", async () => {
    const logger = recordingLogger();
    const { onFailure, failed } = nextFailure();
    const boom = new Error("boom");
    runInBackground({ logger, fields: { agent: "alpha" }, onFailure }, "spawn", () =>
      Promise.reject(boom),
    );
    expect(await failed).toEqual({ task: "spawn", error: boom });
    expect(logger.lines).toEqual([
      {
        level: "error",
        msg: "background task failed",
        fields: { agent: "alpha", task: "spawn", error: boom },
      },
    ]);
  });

  it("treats a synchronous throw of the work and a throw of onResult as failures", async () => {
    const first = nextFailure();
    runInBackground({ onFailure: first.onFailure }, "sync", () => {
      throw new Error("at once");
    });
    expect(((await first.failed).error as Error).message).toBe("at once");

    const second = nextFailure();
    runInBackground(
      { onFailure: second.onFailure },
      "result",
      async () => 1,
      () => {
        throw new Error("in onResult");
      },
    );
    expect(((await second.failed).error as Error).message).toBe("in onResult");
  });

  it("logs an onFailure that throws instead of leaving an unhandled rejection", async () => {
    const logger = recordingLogger();
    const logged = new Promise<void>((resolve) => {
      const error = logger.error;
      logger.error = (msg, fields) => {
        error(msg, fields);
        if (msg === "background task failure handler threw") resolve();
      };
    });
    runInBackground(
      {
        logger,
        onFailure: () => {
          throw new Error("handler bug");
        },
      },
      "probe",
      () => Promise.reject(new Error("probe failed")),
    );
    await logged;
    expect(logger.lines.map((line) => line.msg)).toEqual([
      "background task failed",
      "background task failure handler threw",
    ]);
  });
});
