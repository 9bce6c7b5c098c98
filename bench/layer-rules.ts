/**
 * Section 1, the layer rule's price: layers cannot delta against each other, so a snapshot's packs
 * are bigger than one pack of the same history. Measured at a depth of 2^k, where the digit rules of
 * bases 2, 4 and 8 all carry their most layers (n − 1 = 2^k − 1 has only maximal digits), and at the
 * head's depth (a typical one), for the bases the rule could use (SNAPSHOT_LAYER_BASE is one of them),
 * against one single-threaded pack of everything: total pack bytes, and the time to build all layers
 * with every core (the cold case) vs the one pack (one thread, as it must be deterministic).
 */
import { mkdir, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { SNAPSHOT_LAYER_BASE } from '../src/git/snapshot/format.js';
import { buildLayer, semaphore } from '../src/git/snapshot/layer-build.js';
import { layerSpans } from '../src/git/snapshot/layers.js';
import type { Row } from './table.js';
import { fmtBytes, fmtSeconds, log, timed } from './util.js';

const SECTION = 'generation';

export async function benchLayerRules(mirror: string, mainline: string[], work: string): Promise<Row[]> {
  const depth = 1 << Math.floor(Math.log2(mainline.length));
  const at = (d: number): string | undefined => (d === 0 ? undefined : mainline[d - 1]);
  const limit = semaphore(availableParallelism());
  let dirs = 0;
  const packBytes = async (spans: Array<{ from: number; to: number }>, objectsPerPart?: number): Promise<{ bytes: number; ms: number; packs: number }> => {
    const root = path.join(work, `rule-${dirs++}`);
    await mkdir(root);
    try {
      const { ms, value } = await timed(() =>
        Promise.all(
          spans.map(async (span, i) => {
            const dir = path.join(root, String(i));
            await mkdir(dir);
            return buildLayer(mirror, at(span.from), at(span.to) as string, dir, { limit, objectsPerPart });
          }),
        ),
      );
      const packs = value.flat();
      return { ms, bytes: packs.reduce((n, p) => n + p.packSize, 0), packs: packs.length };
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  };
  const rows: Row[] = [];
  // 2^k: every digit of n - 1 is the largest in bases 2, 4 and 8 (the most layers); the head: a typical depth.
  for (const target of [...new Set([depth, mainline.length])]) {
    const one = await packBytes([{ from: 0, to: target }], Number.MAX_SAFE_INTEGER);
    log(`layer rules at depth ${target}: one pack ${fmtBytes(one.bytes)} in ${fmtSeconds(one.ms)}`);
    const measured = new Map<string, { bytes: number; ms: number; packs: number }>();
    for (const base of [2, 4, 8]) {
      const spans = layerSpans(target, base);
      const key = JSON.stringify(spans);
      const layered = measured.get(key) ?? (await packBytes(spans));
      measured.set(key, layered);
      log(`layer rules at depth ${target}, base ${base}: ${spans.length} layers, ${layered.packs} packs, ${fmtBytes(layered.bytes)} in ${fmtSeconds(layered.ms)}`);
      rows.push({
        section: SECTION,
        metric: `layer rule, base ${base}${base === SNAPSHOT_LAYER_BASE ? ' (used)' : ''}: pack bytes at depth ${target} (${spans.length} layers, ${layered.packs} packs)`,
        ours: fmtBytes(layered.bytes),
        baseline: `${fmtBytes(one.bytes)} (one pack)`,
        ratio: `+${(((layered.bytes - one.bytes) / one.bytes) * 100).toFixed(1)}%`,
        aim: '',
        note: `built with ${availableParallelism()} cores in ${fmtSeconds(layered.ms)}; the one pack (1 thread) ${fmtSeconds(one.ms)}`,
      });
    }
  }
  return rows;
}
