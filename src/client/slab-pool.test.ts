import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SLAB_BYTES, SlabPool } from './slab-pool.js';

void describe('SlabPool', () => {
  void it('hands out fresh slabs of SLAB_BYTES while none is free', () => {
    const pool = new SlabPool();
    const a = pool.take();
    const b = pool.take();
    assert.equal(a.length, SLAB_BYTES);
    assert.notEqual(a.buffer, b.buffer);
    assert.equal(pool.freeCount, 0);
  });

  void it('reuses a slab only once it is retired and every piece handed out is released', () => {
    const pool = new SlabPool();
    const slab = pool.take();
    const first = slab.subarray(0, 100);
    const second = slab.subarray(100, 300);
    pool.handOut(first);
    pool.handOut(second);
    pool.retire(slab);
    assert.equal(pool.freeCount, 0, 'pieces are still out');
    pool.release(first);
    assert.equal(pool.freeCount, 0, 'one piece is still out');
    pool.release(second);
    assert.equal(pool.freeCount, 1);
    assert.equal(pool.take().buffer, slab.buffer, 'the recycled slab comes back');
  });

  void it('does not reuse a slab its connection still reads into', () => {
    const pool = new SlabPool();
    const slab = pool.take();
    const piece = slab.subarray(0, 10);
    pool.handOut(piece);
    pool.release(piece);
    assert.equal(pool.freeCount, 0);
    assert.notEqual(pool.take().buffer, slab.buffer);
    pool.retire(slab);
    assert.equal(pool.freeCount, 1);
  });

  void it('never reuses a slab with a piece that was not released', () => {
    const pool = new SlabPool();
    const slab = pool.take();
    pool.handOut(slab.subarray(0, 10));
    pool.handOut(slab.subarray(10, 20));
    pool.release(slab.subarray(0, 10));
    pool.retire(slab);
    assert.equal(pool.freeCount, 0);
    assert.notEqual(pool.take().buffer, slab.buffer);
  });

  void it('ignores pieces that are not views of its slabs', () => {
    const pool = new SlabPool();
    const slab = pool.take();
    const foreign = Buffer.alloc(64);
    pool.handOut(foreign);
    pool.release(foreign);
    pool.retire(foreign);
    pool.retire(slab);
    assert.equal(pool.freeCount, 1);
  });

  void it('keeps a bounded number of free slabs', () => {
    const pool = new SlabPool();
    const slabs = Array.from({ length: 200 }, () => pool.take());
    for (const slab of slabs) pool.retire(slab);
    assert.ok(pool.freeCount > 0 && pool.freeCount < 200, `free ${pool.freeCount}`);
  });
});
