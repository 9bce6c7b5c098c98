import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PACK_SPREAD, interleavePacks } from './frame-order.js';

const frames = (prefix: string, weights: number[]): Array<{ name: string; weight: number }> => weights.map((weight, i) => ({ name: `${prefix}${i + 1}`, weight }));
const names = (items: Array<{ name: string }>): string[] => items.map((i) => i.name);

void describe('interleavePacks', () => {
  void it('places each pack at its midpoint among the packs, squeezed into the first 3/4 of the work tree', () => {
    assert.deepEqual(PACK_SPREAD, [3, 4]);
    // Pack midpoints 1/4 and 3/4, times 3/4: 3/16 and 9/16 of 80, i.e. at 15 and 45, where b2 and b5
    // have their midpoints; a tie puts the pack first.
    const order = interleavePacks(frames('p', [10, 10]), [...frames('b', [10, 10, 10, 10, 10, 10, 10, 10]), { name: 'end', weight: 1 }]);
    assert.deepEqual(names(order), ['b1', 'p1', 'b2', 'b3', 'b4', 'p2', 'b5', 'b6', 'b7', 'b8', 'end']);
  });

  void it('keeps both orders, keeps the last tail frame last, and loses nothing', () => {
    const packs = frames('p', [7, 300, 1, 50]);
    const tail = frames('t', [5, 90, 1, 1, 400, 3, 60, 2, 8, 1024]);
    const order = interleavePacks(packs, tail);
    assert.equal(order.length, packs.length + tail.length);
    assert.deepEqual(names(order.filter((f) => f.name.startsWith('p'))), names(packs));
    assert.deepEqual(names(order.filter((f) => f.name.startsWith('t'))), names(tail));
    assert.equal(order[order.length - 1].name, 't10');
    // Every pack comes before each work tree frame whose midpoint lies in the last quarter (by
    // weight), and before the last work tree frame.
    const body = tail.slice(0, -1);
    const bodyTotal = body.reduce((n, f) => n + f.weight, 0);
    let before = 0;
    const late = new Set(body.flatMap((f) => ((before += f.weight) - f.weight / 2 > (bodyTotal * 3) / 4 ? [f.name] : [])));
    late.add(body[body.length - 1].name);
    const lastPack = Math.max(...packs.map((p) => order.indexOf(p)));
    for (const name of late) assert.ok(order.findIndex((f) => f.name === name) > lastPack, `${name} after every pack`);
  });

  void it('leaves the tail alone without packs, and puts packs first when the tail is only its last frame', () => {
    const tail = frames('t', [1, 2, 3]);
    assert.deepEqual(names(interleavePacks([], tail)), ['t1', 't2', 't3']);
    assert.deepEqual(names(interleavePacks(frames('p', [5, 6]), frames('t', [1]))), ['p1', 'p2', 't1']);
    assert.deepEqual(names(interleavePacks(frames('p', [5, 6]), frames('t', [100, 1]))), ['p1', 'p2', 't1', 't2']);
  });

  void it('is exact for weights beyond 2^53 when multiplied (BigInt arithmetic)', () => {
    const big = 2 ** 40;
    const order = interleavePacks(frames('p', [big, big]), [...frames('b', [big, big, big, big, big, big, big, big]), { name: 'end', weight: 1 }]);
    assert.deepEqual(names(order), ['b1', 'p1', 'b2', 'b3', 'b4', 'p2', 'b5', 'b6', 'b7', 'b8', 'end']);
  });
});
