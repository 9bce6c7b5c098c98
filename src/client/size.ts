/**
 * Human sizes for the CLI (`--chunk-size 16MiB`) and the progress bar. Units are binary: `k`, `KiB`
 * and `KB` all mean 1024 bytes, because chunk sizes are about memory, where nobody means 1000.
 */
import { BadRequestError } from '../util/errors.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

const SIZE = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/;

/**
 * Parses `4096`, `512KiB`, `16MiB`, `1GiB`, `64k`, `2m`, `1.5g` into a whole number of bytes.
 * Throws BadRequestError for anything else (negative, unknown unit, fractional bytes, not finite).
 */
export function parseSize(text: string): number {
  const match = SIZE.exec(text.trim().toLowerCase());
  const multiplier = match ? UNITS[match[2]] : undefined;
  if (!match || multiplier === undefined) {
    throw new BadRequestError(`invalid size "${text}" (expected bytes or a number with KiB, MiB, GiB, k, m, g)`);
  }
  const bytes = Number(match[1]) * multiplier;
  if (!Number.isSafeInteger(bytes)) throw new BadRequestError(`invalid size "${text}" (not a whole number of bytes)`);
  return bytes;
}

/** `1536` → `1.5 KiB`; short enough for a progress line. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}
