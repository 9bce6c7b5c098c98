/**
 * The layer rule: which deterministic packs a snapshot carries, decided by the first-parent depth of
 * its commit alone (docs/snapshots.md, "Layered packs").
 *
 * Number the first-parent line of the commit 1 (the root) … n (the commit). A layer (a, b] holds the
 * objects reachable from the first-parent ancestor at depth b and not from the one at depth a
 * (a = 0: everything reachable from b). A snapshot at depth n carries the layers cut at
 *
 *   the prefix sums of n − 1 written in base B, one layer per non-zero digit (highest first),
 *   then the top layer (n − 1, n].
 *
 * B = 2 is a binary counter: n − 1 = 300 = 256 + 32 + 8 + 4 gives (0, 256], (256, 288], (288, 296],
 * (296, 300] and the top (300, 301]. B = 8 (the format's, SNAPSHOT_LAYER_BASE): 300 = 4·64 + 5·8 + 4
 * gives (0, 256], (256, 296], (296, 300] and the top (300, 301]. Why this shape:
 * - O(log n) layers: one per non-zero digit, plus the top;
 * - every layer except the top ends at or before n − 1, so it already exists before commit n does:
 *   a replica can build the next commit's layers in the background (prepareNextLayers), and a new
 *   commit then packs only its own new objects;
 * - a layer of size d·B^j is rebuilt (merged from smaller ones) once every B^j commits, so the big
 *   old layers are rebuilt rarely (the whole history only when n − 1 = d·B^k, one non-zero digit);
 * - a rule on n alone: every replica picks the same layers, whatever its mirror looks like.
 * Layers cannot delta against each other, which is the size cost of the rule (measured in
 * docs/benchmarks.md against one pack of the whole history).
 */

/** One layer: first-parent depths (from, to], 0 <= from < to. */
export interface LayerSpan {
  from: number;
  to: number;
}

/** Layer boundaries for first-parent depth `n` (root = 1): ascending depths, the last one is `n`. */
export function layerBoundaries(n: number, base: number): number[] {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`bad first-parent depth ${n}`);
  if (!Number.isSafeInteger(base) || base < 2) throw new RangeError(`bad layer base ${base}`);
  const cuts: number[] = [];
  let rest = n - 1;
  let power = 1;
  while (power <= rest / base) power *= base;
  let at = 0;
  for (; power >= 1 && rest > 0; power /= base) {
    const digit = Math.floor(rest / power);
    if (digit === 0) continue;
    at += digit * power;
    rest -= digit * power;
    cuts.push(at);
  }
  cuts.push(n);
  return cuts;
}

/** The layers of a snapshot at first-parent depth `n`, oldest first. */
export function layerSpans(n: number, base: number): LayerSpan[] {
  const cuts = layerBoundaries(n, base);
  return cuts.map((to, i) => ({ from: i === 0 ? 0 : cuts[i - 1], to }));
}
