/**
 * A pass-through stream that counts the bytes of an archive as they are unpacked, so that
 * neither a whole archive nor one of its files can hold more than it may (a decompression bomb,
 * an entry that lies about its size).
 */
import { Transform, type TransformCallback } from "node:stream";

export class ByteCount extends Transform {
  readonly #max: number;
  readonly #tooMany: () => Error;
  readonly #tooFew: (() => Error) | undefined;
  #total = 0;

  /**
   * @param max most bytes that may pass.
   * @param tooMany the error the stream fails with once more than `max` bytes came.
   * @param tooFew when given, `max` is also the exact count: the stream fails with this error
   *   when it ends short of it.
   */
  constructor(max: number, tooMany: () => Error, tooFew?: () => Error) {
    super();
    this.#max = max;
    this.#tooMany = tooMany;
    this.#tooFew = tooFew;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#total += chunk.length;
    if (this.#total > this.#max) {
      callback(this.#tooMany());
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#tooFew !== undefined && this.#total !== this.#max) {
      callback(this.#tooFew());
      return;
    }
    callback();
  }
}
