import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryCache } from '../cache/memory.js';
import { FaultyCache } from '../cache/testing/faulty.js';
import { UnavailableError } from '../util/errors.js';
import { GenerationLeases, leaseKey, type LeaseOutcome } from './lease.js';
import { readJson } from './records.js';
import { ManualClock } from '../util/testing/manual-clock.js';

const TTL = 60_000;

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Lets the runs under test react to what just happened (they advance on promise callbacks and I/O). */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
}

/** Waits (bounded) until `check` holds, without moving the clock. */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !check(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(check(), 'condition never became true');
}

/** Moves the clock in 1 s steps (bounded), letting the runs react after each, until `check` holds. */
async function advanceUntil(clock: ManualClock, check: () => boolean, maxSteps = 200): Promise<void> {
  for (let i = 0; i < maxSteps && !check(); i++) {
    await clock.advance(1_000);
    await settle();
  }
  assert.ok(check(), 'condition never became true');
}

function leases(cache: MemoryCache | FaultyCache, clock: ManualClock, owner: string, outcomes: LeaseOutcome[]): GenerationLeases {
  return new GenerationLeases({ cache, owner, ttlMs: TTL, pollMs: 1_000, clock, onOutcome: (o) => outcomes.push(o) });
}

void test('lease: of two replicas asked at once, one generates and the other uses its result', async () => {
  const cache = new MemoryCache({ limitBytes: 1 << 20 });
  const clock = new ManualClock();
  const outcomes: LeaseOutcome[] = [];
  const a = leases(cache, clock, 'a', outcomes);
  const b = leases(cache, clock, 'b', outcomes);
  let published: string | undefined;
  let works = 0;
  const gate = deferred();
  const work = async (): Promise<string> => {
    works++;
    await gate.promise;
    return 'record';
  };
  const finished = async (): Promise<string | undefined> => published;
  try {
    const first = a.run('h', 'o/r', work, finished);
    await until(() => works === 1);
    const second = b.run('h', 'o/r', work, finished);
    // A's renewal timer and B's poll.
    await until(() => clock.pendingTimers === 2);
    // The holder published its record but still holds the lease: the waiter uses the record.
    published = 'record';
    await advanceUntil(clock, () => outcomes.includes('waited'));
    assert.equal(await second, 'record');
    gate.resolve();
    assert.equal(await first, 'record');
    assert.equal(works, 1);
    assert.deepEqual(outcomes.sort(), ['taken', 'waited']);
    const lease = await readJson(cache, leaseKey('h', 'o/r'), (v) => v as { expires: string });
    assert.equal(lease?.value.expires, new Date(0).toISOString(), 'released after the work');
    assert.equal(clock.pendingTimers, 0, 'no timer left behind');
  } finally {
    await cache.close();
  }
});

void test('lease: the holder renews it while it works, so a long generation is not taken over', async () => {
  const cache = new MemoryCache({ limitBytes: 1 << 20 });
  const clock = new ManualClock();
  const outcomes: LeaseOutcome[] = [];
  const gate = deferred();
  let works = 0;
  const work = async (): Promise<string> => {
    works++;
    await gate.promise;
    return 'done';
  };
  try {
    const holder = leases(cache, clock, 'a', outcomes).run('h', 'o/r', work, async () => undefined);
    await until(() => works === 1);
    const waiter = leases(cache, clock, 'b', outcomes).run('h', 'o/r', work, async () => undefined);
    const start = clock.now();
    await advanceUntil(clock, () => clock.now() >= start + 3 * TTL);
    assert.equal(works, 1, 'three TTLs later the renewed lease is still held');
    gate.resolve();
    await holder;
    await advanceUntil(clock, () => works === 2);
    await waiter;
    assert.deepEqual(outcomes, ['taken', 'taken']);
  } finally {
    await cache.close();
  }
});

void test('lease: a dead holder is taken over once it expired, by exactly one of the waiters', async () => {
  const cache = new MemoryCache({ limitBytes: 1 << 20 });
  const clock = new ManualClock();
  const outcomes: LeaseOutcome[] = [];
  // A reaches the store through its own connection, which dies after A took the lease.
  const aStore = new FaultyCache(cache);
  const a = leases(aStore, clock, 'a', outcomes);
  const [b, c] = ['b', 'c'].map((owner) => leases(cache, clock, owner, outcomes));
  const started: string[] = [];
  const gates = { a: deferred(), b: deferred(), c: deferred() };
  const work = (name: 'a' | 'b' | 'c') => async (): Promise<string> => {
    started.push(name);
    await gates[name].promise;
    return name;
  };
  const nothing = async (): Promise<string | undefined> => undefined;
  try {
    const runA = a.run('h', 'o/r', work('a'), nothing);
    await until(() => started.length === 1);
    const takenAt = clock.now();
    aStore.faults.create = new UnavailableError('network gone');
    const runB = b.run('h', 'o/r', work('b'), nothing);
    const runC = c.run('h', 'o/r', work('c'), nothing);
    await advanceUntil(clock, () => clock.now() >= takenAt + TTL - 1_000);
    assert.deepEqual(started, ['a'], 'nobody takes an unexpired lease');
    await advanceUntil(clock, () => started.length === 2);
    await settle();
    assert.ok(started[1] === 'b' || started[1] === 'c');
    assert.equal(started.length, 2, 'exactly one waiter took over');
    assert.equal(outcomes.filter((o) => o === 'took-over').length, 1);

    // The old holder wakes up and finishes: its release must not free the new holder's lease.
    aStore.faults.create = undefined;
    gates.a.resolve();
    assert.equal(await runA, 'a');
    const lease = await readJson(cache, leaseKey('h', 'o/r'), (v) => v as { owner: string; expires: string });
    assert.equal(lease?.value.owner, started[1]);
    assert.ok(Date.parse(lease.value.expires) > clock.now());

    const winner = started[1] as 'b' | 'c';
    gates[winner].resolve();
    assert.equal(await (winner === 'b' ? runB : runC), winner);
    const other = winner === 'b' ? 'c' : 'b';
    gates[other].resolve();
    await advanceUntil(clock, () => started.length === 3);
    assert.equal(await (winner === 'b' ? runC : runB), other, 'the last waiter takes the released lease');
    // Over the whole run, not just the moment after the takeover: one took over, the other took it freed.
    assert.deepEqual(outcomes, ['taken', 'took-over', 'taken']);
  } finally {
    await cache.close();
  }
});

void test('lease: a failing lease store never blocks generation (fails open)', async () => {
  const cache = new FaultyCache(new MemoryCache({ limitBytes: 1 << 20 }), { open: new UnavailableError('s3 down') });
  const outcomes: LeaseOutcome[] = [];
  try {
    const result = await leases(cache, new ManualClock(), 'a', outcomes).run('h', 'o/r', async () => 'generated', async () => undefined);
    assert.equal(result, 'generated');
    assert.deepEqual(outcomes, ['failed-open']);
  } finally {
    await cache.close();
  }
});

void test('lease: a holder that keeps it past the wait bound does not block a waiter forever', async () => {
  const cache = new MemoryCache({ limitBytes: 1 << 20 });
  const clock = new ManualClock();
  const outcomes: LeaseOutcome[] = [];
  const waiter = new GenerationLeases({ cache, owner: 'w', ttlMs: TTL, maxWaitMs: 5_000, clock, onOutcome: (o) => outcomes.push(o) });
  const gate = deferred();
  let holding = false;
  try {
    const held = leases(cache, clock, 'h', []).run('h', 'o/r', async () => {
      holding = true;
      await gate.promise;
      return 'h';
    }, async () => undefined);
    await until(() => holding);
    const waiting = waiter.run('h', 'o/r', async () => 'w', async () => undefined);
    await advanceUntil(clock, () => outcomes.length > 0);
    assert.equal(await waiting, 'w');
    assert.deepEqual(outcomes, ['timed-out']);
    gate.resolve();
    await held;
  } finally {
    await cache.close();
  }
});
