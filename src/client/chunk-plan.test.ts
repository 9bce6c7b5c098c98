import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChunkPlan, type ChunkPlanOptions } from './chunk-plan.js';

/** Every chunk's [first, last], checked to tile [start, end] without gaps or overlaps. */
function tiles(options: ChunkPlanOptions): Array<[number, number]> {
  const plan = new ChunkPlan(options);
  const out: Array<[number, number]> = [];
  let next = options.start;
  for (let i = 0; i < plan.count; i++) {
    const { first, last } = plan.range(i);
    assert.equal(first, next, `chunk ${i} starts where the previous one ended`);
    assert.ok(last >= first && last - first + 1 <= options.chunkBytes, `chunk ${i} is 1..chunkBytes long`);
    out.push([first, last]);
    next = last + 1;
  }
  assert.equal(next, Math.max(options.start, options.end + 1), 'the chunks cover the span exactly');
  return out;
}

const sizes = (chunks: Array<[number, number]>): number[] => chunks.map(([first, last]) => last - first + 1);

void describe('ChunkPlan', () => {
  void it('cuts equal chunks without a ramp', () => {
    assert.deepEqual(sizes(tiles({ start: 100, end: 100 + 25 - 1, chunkBytes: 10 })), [10, 10, 5]);
  });

  void it('ramps from the first size by one step per chunk up to the chunk size', () => {
    // 2, 3, 4, … steps of 1 MiB up to 8 MiB, as download.ts asks with the defaults.
    const MiB = 1024 * 1024;
    const chunks = tiles({ start: MiB, end: MiB + 60 * MiB - 1, chunkBytes: 8 * MiB, firstBytes: 2 * MiB, rampStep: MiB });
    assert.deepEqual(sizes(chunks), [2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 1].map((n) => n * MiB));
  });

  void it('ends inside the ramp when the span is short', () => {
    assert.deepEqual(sizes(tiles({ start: 0, end: 9, chunkBytes: 100, firstBytes: 2, rampStep: 3 })), [2, 5, 3]);
    assert.deepEqual(sizes(tiles({ start: 0, end: 6, chunkBytes: 100, firstBytes: 2, rampStep: 3 })), [2, 5]);
  });

  void it('has no chunks for an empty span, and refuses indexes outside the plan', () => {
    const plan = new ChunkPlan({ start: 10, end: 9, chunkBytes: 4, firstBytes: 1, rampStep: 1 });
    assert.equal(plan.count, 0);
    assert.throws(() => plan.range(0), RangeError);
    assert.throws(() => new ChunkPlan({ start: 0, end: 9, chunkBytes: 0 }), RangeError);
  });

  void it('keeps a first size above the chunk size to the chunk size', () => {
    assert.deepEqual(sizes(tiles({ start: 0, end: 19, chunkBytes: 8, firstBytes: 50, rampStep: 1 })), [8, 8, 4]);
  });
});
