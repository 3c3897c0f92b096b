/**
 * Receiving an uploaded archive: chunks are written in order to a file (one write at a time, so
 * a fast client waits on the disk through gRPC flow control), hashed with SHA-256 as they pass,
 * and counted against `max_package_bytes` while they stream, so an oversized upload is refused
 * at the byte that passes the bound rather than at its end.
 */
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { packageInvalid } from "./archive-entries.ts";

export interface UploadOptions {
  /** File to create (exclusively) and fill. The caller removes it. */
  readonly file: string;
  /** `max_package_bytes`. */
  readonly maxBytes: number;
  /** The size the client announced, when it did. */
  readonly expectedBytes: number | undefined;
  /** The SHA-256 the client announced, lower-case hex. */
  readonly sha256: string;
  readonly signal: AbortSignal;
  /**
   * Longest wait for the next chunk, ms: a client that stops sending without closing is refused
   * rather than holding an install slot and a staging file forever. Default 60 s.
   */
  readonly idleTimeoutMs?: number;
}

/** Default longest pause in an upload: 60 s. */
export const DEFAULT_UPLOAD_IDLE_TIMEOUT_MS = 60_000;

const STALLED = Symbol("stalled");

/** The next chunk, or STALLED when none comes within `timeoutMs`. */
async function nextWithin(
  iterator: AsyncIterator<Uint8Array>,
  timeoutMs: number,
): Promise<IteratorResult<Uint8Array> | typeof STALLED> {
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<typeof STALLED>((resolve) => {
    timer = setTimeout(() => resolve(STALLED), timeoutMs);
  });
  try {
    return await Promise.race([iterator.next(), stalled]);
  } finally {
    clearTimeout(timer);
  }
}

export interface ReceivedUpload {
  readonly bytes: number;
  /** The archive's first bytes (up to 8), to tell its format. */
  readonly head: Uint8Array;
}

/**
 * Writes `chunks` to `options.file` and checks the result.
 * @throws PACKAGE_INVALID when the upload passes `maxBytes` or the announced size, ends before
 *   the announced size, is empty, or does not hash to `sha256`; the error `chunks` threw (a cut
 *   upload) or `signal`'s reason; file-system errors.
 */
export async function receiveUpload(
  chunks: AsyncIterable<Uint8Array>,
  options: UploadOptions,
): Promise<ReceivedUpload> {
  const { maxBytes, expectedBytes, signal } = options;
  if (expectedBytes !== undefined && expectedBytes > maxBytes) {
    throw tooLarge(maxBytes, expectedBytes);
  }
  const hash = createHash("sha256");
  const head = new Uint8Array(8);
  let bytes = 0;
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_UPLOAD_IDLE_TIMEOUT_MS;
  const iterator = chunks[Symbol.asyncIterator]();
  let finished = false;
  const handle = await open(options.file, "wx", 0o600);
  try {
    for (;;) {
      const next = await nextWithin(iterator, idleTimeoutMs);
      if (next === STALLED) {
        throw packageInvalid(`the upload stalled: no bytes for ${idleTimeoutMs / 1000} s`);
      }
      if (next.done === true) {
        finished = true;
        break;
      }
      const chunk = next.value;
      signal.throwIfAborted();
      if (bytes < head.length) head.set(chunk.subarray(0, head.length - bytes), bytes);
      bytes += chunk.length;
      if (bytes > maxBytes) throw tooLarge(maxBytes);
      if (expectedBytes !== undefined && bytes > expectedBytes) {
        throw packageInvalid(`the upload holds more than the ${expectedBytes} bytes announced`);
      }
      hash.update(chunk);
      await handle.write(chunk);
    }
    signal.throwIfAborted();
  } finally {
    // Not awaited: a source blocked in a read only sees it once that read settles.
    if (!finished) iterator.return?.().catch(() => undefined);
    await handle.close();
  }
  if (bytes === 0) throw packageInvalid("the upload is empty");
  if (expectedBytes !== undefined && bytes < expectedBytes) {
    throw packageInvalid(`the upload is truncated: ${bytes} of ${expectedBytes} bytes arrived`);
  }
  const actual = hash.digest("hex");
  if (actual !== options.sha256) {
    throw packageInvalid(
      `checksum mismatch: the archive's SHA-256 is ${actual}, the header says ${options.sha256}`,
      { sha256: actual },
    );
  }
  return { bytes, head: head.subarray(0, Math.min(bytes, head.length)) };
}

function tooLarge(maxBytes: number, announced?: number): Error {
  const size = announced === undefined ? "" : ` (${announced} bytes announced)`;
  return packageInvalid(`the archive is larger than max_package_bytes, ${maxBytes} bytes${size}`, {
    max_package_bytes: String(maxBytes),
  });
}
