/**
 * FNV-1a (32-bit) over bytes: a fixed, dependency-free hash for decisions that are part of the
 * snapshot format (which part a layer object goes to, where the work tree is cut into frames), so
 * they can never change with a library or platform. Not for anything adversarial.
 */
export function fnv1a32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) {
    hash ^= bytes[i];
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
