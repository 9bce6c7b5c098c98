/**
 * The layer rule (layers.ts): boundaries from the first-parent depth alone, O(log n) layers, the top
 * layer always the commit's own, and the merges that happen as the depth grows.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { layerBoundaries, layerSpans } from './layers.js';

void describe('layer rule', () => {
  void it('cuts at the binary digits of n - 1, then the commit itself', () => {
    assert.deepEqual(layerBoundaries(1, 2), [1]);
    assert.deepEqual(layerBoundaries(2, 2), [1, 2]);
    assert.deepEqual(layerBoundaries(3, 2), [2, 3]);
    assert.deepEqual(layerBoundaries(4, 2), [2, 3, 4]);
    assert.deepEqual(layerBoundaries(256, 2), [128, 192, 224, 240, 248, 252, 254, 255, 256]);
    assert.deepEqual(layerBoundaries(257, 2), [256, 257]);
    assert.deepEqual(layerBoundaries(301, 2), [256, 288, 296, 300, 301]);
    assert.deepEqual(layerSpans(301, 2), [
      { from: 0, to: 256 },
      { from: 256, to: 288 },
      { from: 288, to: 296 },
      { from: 296, to: 300 },
      { from: 300, to: 301 },
    ]);
  });

  void it('merges digits of one power in a larger base', () => {
    // 300 = 1·256 + 0·64 + 2·16 + 3·4 + 0 in base 4.
    assert.deepEqual(layerBoundaries(301, 4), [256, 288, 300, 301]);
    assert.deepEqual(layerBoundaries(17, 4), [16, 17]);
    assert.deepEqual(layerBoundaries(16, 4), [12, 15, 16]);
  });

  void it('covers the first-parent line exactly, with O(log n) layers', () => {
    for (const base of [2, 3, 4, 8]) {
      for (let n = 1; n <= 2100; n++) {
        const spans = layerSpans(n, base);
        assert.equal(spans[0].from, 0);
        assert.equal(spans.at(-1)?.to, n);
        assert.deepEqual(spans.at(-1), { from: n - 1, to: n }, 'the top layer is the commit alone');
        for (let i = 1; i < spans.length; i++) assert.equal(spans[i].from, spans[i - 1].to);
        assert.ok(spans.length <= Math.floor(Math.log(Math.max(n - 1, 1)) / Math.log(base)) + 2, `n=${n} base=${base}: ${spans.length} layers`);
      }
    }
  });

  void it('lets a new commit reuse every layer of the previous snapshot but at most one merge', () => {
    for (let n = 2; n <= 1100; n++) {
      const before = new Set(layerSpans(n, 2).map((s) => `${s.from}-${s.to}`));
      const after = layerSpans(n + 1, 2);
      const fresh = after.filter((s) => !before.has(`${s.from}-${s.to}`));
      // The top layer is new; at most one other layer is new, and it merges layers of n (ends at n).
      assert.deepEqual(fresh.at(-1), { from: n, to: n + 1 });
      assert.ok(fresh.length <= 2, `n=${n}: ${JSON.stringify(fresh)}`);
      if (fresh.length === 2) {
        const merged = fresh[0];
        assert.equal(merged.to, n);
        assert.equal(merged.to - merged.from, n & -n, 'the merged layer is as long as the lowest set bit of n');
      }
    }
  });

  void it('rebuilds the whole history only when n - 1 is a power of the base', () => {
    const whole: number[] = [];
    for (let n = 2; n <= 5000; n++) if (layerSpans(n, 2)[0].to === n - 1 && layerSpans(n - 1, 2)[0].to !== n - 1) whole.push(n);
    assert.deepEqual(whole, [3, 5, 9, 17, 33, 65, 129, 257, 513, 1025, 2049, 4097]);
  });

  void it('refuses depths and bases it cannot cut', () => {
    assert.throws(() => layerBoundaries(0, 2), RangeError);
    assert.throws(() => layerBoundaries(1.5, 2), RangeError);
    assert.throws(() => layerBoundaries(5, 1), RangeError);
  });
});
