/**
 * Memory sizes as written in agent definitions (`[resources].memory_limit`).
 *
 * Units, case-insensitive:
 * - decimal (SI): `B`, `KB` = 10^3, `MB` = 10^6, `GB` = 10^9, `TB` = 10^12 bytes;
 * - binary (IEC): `KiB` / `Ki` = 2^10, `MiB` / `Mi` = 2^20, `GiB` / `Gi` = 2^30, `TiB` / `Ti` = 2^40;
 * - single letters `K`, `M`, `G`, `T` are binary, as in Docker (`-m 2g`) and the JVM (`-Xmx2g`),
 *   which is what an operator typing `2g` means.
 *
 * The number may have a fraction (`1.5GiB`) and spaces before the unit (`512 MB`). A number
 * without a unit is refused: "512" could be bytes or megabytes, and guessing wrong either kills
 * an agent at once or never.
 */

const UNIT_BYTES: Readonly<Record<string, number>> = Object.freeze({
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  k: 2 ** 10,
  ki: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mi: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gi: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  ti: 2 ** 40,
  tib: 2 ** 40,
});

const MEMORY_SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]+)\s*$/;

/** The problem text used when a memory size cannot be read (SPEC §2 wording). */
export const INVALID_MEMORY_FORMAT = "Invalid memory format";

/** Thrown by `parseMemorySize`; the message starts with "Invalid memory format" or names the range. */
export class MemorySizeError extends Error {
  override readonly name = "MemorySizeError";
}

/**
 * Parses a size such as `"512MB"`, `"4GB"`, `"1.5GiB"`, `"100KiB"` or `"2g"` into bytes
 * (rounded to a whole byte). See the module comment for the units.
 * @throws MemorySizeError for a missing or unknown unit or a malformed number (message contains
 *   "Invalid memory format"), for zero, and for sizes above Number.MAX_SAFE_INTEGER bytes.
 */
export function parseMemorySize(text: string): number {
  const match = MEMORY_SIZE_PATTERN.exec(text);
  const amount = match?.[1];
  const unit = match?.[2];
  const factor = unit === undefined ? undefined : UNIT_BYTES[unit.toLowerCase()];
  if (amount === undefined || factor === undefined) {
    throw new MemorySizeError(
      `${INVALID_MEMORY_FORMAT} ${JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)}: expected a number and a unit, such as "512MB", "4GB" or "1.5GiB" (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, K, M, G, T)`,
    );
  }
  const bytes = Math.round(Number(amount) * factor);
  if (bytes <= 0) throw new MemorySizeError(`memory size ${JSON.stringify(text)} must be above 0`);
  if (!Number.isSafeInteger(bytes)) {
    throw new MemorySizeError(`memory size ${JSON.stringify(text)} is too large`);
  }
  return bytes;
}

/** Formats bytes for people: binary units, up to two decimals (`1.5 GiB`, `512 MiB`, `100 B`). */
export function formatMemorySize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"] as const;
  let value = bytes;
  let index = 0;
  while (Math.abs(value) >= 1024 && index < units.length - 1) {
    value /= 1024;
    index += 1;
  }
  const rounded = Math.round(value * 100) / 100;
  return `${rounded} ${units[index]}`;
}
