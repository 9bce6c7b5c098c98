/**
 * The layer rule (layers.ts): boundaries from the first-parent depth alone, O(log n) layers, the top
 * layer always the commit's own, and the merges that happen as the depth grows.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SNAPSHOT_LAYER_BASE } from './format.js';
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

  void it('cuts at the octal digits of n - 1 in the format base', () => {
    assert.equal(SNAPSHOT_LAYER_BASE, 8);
    // 300 = 4·64 + 5·8 + 4; 255 = 3·64 + 7·8 + 7 (every digit non-zero: the most layers below 512).
    assert.deepEqual(layerBoundaries(301, 8), [256, 296, 300, 301]);
    assert.deepEqual(layerBoundaries(256, 8), [192, 248, 255, 256]);
    assert.deepEqual(layerBoundaries(257, 8), [256, 257]);
    assert.deepEqual(layerBoundaries(322, 8), [320, 321, 322]);
    assert.deepEqual(layerBoundaries(9, 8), [8, 9]);
    assert.deepEqual(layerBoundaries(8, 8), [7, 8]);
  });

  for (const base of [2, 4, 8]) {
    void it(`base ${base}: a new commit reuses every layer of the previous snapshot but its top and at most one merge`, () => {
      for (let n = 2; n <= 5000; n++) {
        const before = new Set(layerSpans(n, base).map((s) => `${s.from}-${s.to}`));
        const after = layerSpans(n + 1, base);
        const fresh = after.filter((s) => !before.has(`${s.from}-${s.to}`));
        assert.deepEqual(fresh.at(-1), { from: n, to: n + 1 }, 'the top layer is new');
        assert.ok(fresh.length <= 2, `n=${n}: ${JSON.stringify(fresh)}`);
        if (fresh.length === 2) {
          // The merged layer ends at n and is the lowest non-zero digit of n: d·B^j commits.
          const merged = fresh[0];
          assert.equal(merged.to, n);
          let power = 1;
          while ((n / power) % base === 0) power *= base;
          assert.equal(merged.to - merged.from, ((n / power) % base) * power, `n=${n}`);
        }
        // The previous top layer (n - 1, n] stays a layer exactly when n ends in the digit 1.
        assert.equal(fresh.length === 1, n % base === 1, `n=${n}`);
      }
    });

    void it(`base ${base}: rebuilds the whole history only when n - 1 has one non-zero digit`, () => {
      const whole: number[] = [];
      for (let n = 3; n <= 5000; n++) if (layerSpans(n, base).length === 2 && layerSpans(n, base)[0].to !== layerSpans(n - 1, base)[0].to) whole.push(n - 1);
      const expected: number[] = [];
      for (let power = 1; power < 5000; power *= base) for (let d = 1; d < base; d++) if (d * power < 5000 && d * power >= 2) expected.push(d * power);
      assert.deepEqual(whole, expected.sort((a, b) => a - b));
    });
  }

  void it('refuses depths and bases it cannot cut', () => {
    assert.throws(() => layerBoundaries(0, 2), RangeError);
    assert.throws(() => layerBoundaries(1.5, 2), RangeError);
    assert.throws(() => layerBoundaries(5, 1), RangeError);
  });
});
