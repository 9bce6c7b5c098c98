/**
 * Where the layer packs go among the work tree's frames (format v10, part of the format).
 *
 * Why interleave: a restoring client decompresses on one thread and writes files on another
 * (src/client/extract-thread.ts). A pack is one big file: costly to decompress, cheap to write. The
 * work tree is thousands of small files: cheap to decompress, costly to create. With all packs first
 * (v9), the writer idled through the packs and the decompressor through most of the work tree; with
 * each pack placed among the work tree's frames, the decompressor works on a pack while the writer
 * still creates the files decompressed just before it (the client's ring holds them). Measured on the
 * bench snapshot, extraction alone with hashing: docs/benchmarks.md.
 *
 * The rule: a pack goes before the first work tree frame whose midpoint (by weight, i.e. tar bytes)
 * lies beyond the pack's own midpoint among the packs, scaled into the first PACK_SPREAD of the work
 * tree, and in any case before the work tree's last frame; so the last pack, and with it the whole
 * `.git`, is written well before the end: the restore starts its ref fetch then (git-dir-watch.ts).
 * The tail's last frame (it holds the end of archive blocks) stays last. Exact integer arithmetic,
 * so every replica orders alike.
 */

/** The packs are spread over this fraction of the work tree's weight: numerator / denominator. */
export const PACK_SPREAD: readonly [number, number] = [3, 4];

/**
 * `packs` and `tail` (the index, the work tree and the end of archive, in order) merged into one
 * sequence: each keeps its own order, the tail's last item comes last.
 */
export function interleavePacks<T extends { weight: number }>(packs: readonly T[], tail: readonly T[]): T[] {
  if (packs.length === 0 || tail.length <= 1) return [...packs, ...tail];
  const body = tail.slice(0, -1);
  const packTotal = total(packs);
  const bodyTotal = total(body);
  const [num, den] = PACK_SPREAD.map(BigInt) as [bigint, bigint];
  const out: T[] = [];
  let p = 0;
  let b = 0;
  let packDone = 0n;
  let bodyDone = 0n;
  // The last work tree frame is never passed: `.git` is complete before the work tree ends, however
  // coarse the frames (a small repository has few).
  while (p < packs.length && b < body.length - 1) {
    // Midpoints as fractions: pack (2·done + w) / (2·packTotal) · spread against body (2·done + w) / (2·bodyTotal).
    const packAt = (2n * packDone + BigInt(packs[p].weight)) * num * bodyTotal;
    const bodyAt = (2n * bodyDone + BigInt(body[b].weight)) * den * packTotal;
    if (packAt <= bodyAt) {
      packDone += BigInt(packs[p].weight);
      out.push(packs[p++]);
    } else {
      bodyDone += BigInt(body[b].weight);
      out.push(body[b++]);
    }
  }
  out.push(...packs.slice(p), ...body.slice(b), tail[tail.length - 1]);
  return out;
}

function total(items: readonly { weight: number }[]): bigint {
  return items.reduce((sum, item) => sum + BigInt(item.weight), 0n);
}
