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
  const handle = await open(options.file, "wx", 0o600);
  try {
    for await (const chunk of chunks) {
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
