import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuardedCache, type TierState } from './guarded.js';
import { MemoryCache } from './memory.js';
import { FaultyCache } from './testing/faulty.js';
import { AuthoritativeReadView } from './authoritative-view.js';
import { TieredCache } from './tiered.js';
import { readAll } from './testing/conformance.js';
import { writeStream } from './write.js';
import { NotFoundError, PreconditionFailedError, UnavailableError } from '../util/errors.js';
import { ManualClock } from '../util/testing/manual-clock.js';

const outage = (): UnavailableError => new UnavailableError('s3 down');

void test('guard: consecutive outages mark the tier degraded, calls then fail fast, a probe recovers it', async () => {
  const faulty = new FaultyCache(new MemoryCache({ limitBytes: 1 << 20 }));
  const states: TierState[] = [];
  let failures = 0;
  const clock = new ManualClock();
  const guard = new GuardedCache(faulty, {
    failureThreshold: 2,
    probeIntervalMs: 5_000,
    clock,
    onStateChange: (s) => states.push(s),
    onFailure: () => failures++,
  });
  try {
    await writeStream(guard, 'k', ['v']);
    faulty.faults.stat = outage();
    await assert.rejects(guard.stat('k'), /s3 down/);
    assert.equal(guard.state, 'healthy', 'one failure is not an outage');
    await assert.rejects(guard.stat('k'), /s3 down/);
    assert.equal(guard.state, 'degraded');
    assert.deepEqual(states, ['degraded']);

    const callsBefore = faulty.calls.open;
    await assert.rejects(guard.open('k'), (err: unknown) => err instanceof UnavailableError && /degraded/.test(err.message));
    assert.equal(faulty.calls.open, callsBefore, 'a degraded tier is not called');

    // The probe timer asks the tier every 5 s while it is degraded; it still fails.
    const statsBefore = faulty.calls.stat;
    await clock.advance(5_000);
    assert.equal(faulty.calls.stat, statsBefore + 1, 'one probe');
    assert.equal(guard.state, 'degraded');
    faulty.faults.stat = undefined;
    await clock.advance(5_000);
    assert.equal(guard.state, 'healthy', 'a miss on the probe key is an answer');
    assert.deepEqual(states, ['degraded', 'healthy']);
    assert.equal(failures, 3);
    assert.equal(clock.pendingTimers, 0, 'no probing while healthy');
    assert.equal((await readAll((await guard.open('k'))!.body!)).toString(), 'v');
  } finally {
    await guard.close();
  }
});

void test('guard: answers that are not outages (miss, precondition, not found) never degrade the tier', async () => {
  const faulty = new FaultyCache(new MemoryCache({ limitBytes: 1 << 20 }));
  const guard = new GuardedCache(faulty, { failureThreshold: 1, clock: new ManualClock() });
  try {
    assert.equal(await guard.stat('absent'), undefined);
    faulty.faults.open = new PreconditionFailedError('no');
    await assert.rejects(guard.open('x'));
    faulty.faults.open = new NotFoundError('no');
    await assert.rejects(guard.open('x'));
    assert.equal(guard.state, 'healthy');
    faulty.faults.list = outage();
    await assert.rejects(async () => {
      for await (const _ of guard.list('')) void _;
    });
    assert.equal(guard.state, 'degraded', 'list failures count too');
  } finally {
    await guard.close();
  }
});

interface ViewFixture {
  local: MemoryCache;
  shared: FaultyCache;
  guard: GuardedCache;
  view: AuthoritativeReadView;
  clock: ManualClock;
  staleReads: string[];
}

function viewFixture(limitMs: number): ViewFixture {
  const clock = new ManualClock();
  const local = new MemoryCache({ limitBytes: 1 << 20, clock });
  const shared = new FaultyCache(new MemoryCache({ limitBytes: 1 << 20, clock }), {}, 's3');
  const guard = new GuardedCache(shared, { failureThreshold: 1, clock });
  const tiered = new TieredCache([local, guard]);
  const staleReads: string[] = [];
  const view = new AuthoritativeReadView(tiered, {
    staleLimitMs: (key) => (key.startsWith('pointers/') ? limitMs : 0),
    onStaleRead: (key) => staleReads.push(key),
    clock,
  });
  return { local, shared, guard, view, clock, staleReads };
}

void test('view: while the shared tier is down, a confirmed local copy answers within the staleness limit', async () => {
  const f = viewFixture(60_000);
  try {
    // Another replica wrote the pointer straight into the shared tier; our local tier has nothing.
    await writeStream(f.shared.inner, 'pointers/r.json', ['v1']);
    assert.equal(await f.local.stat('pointers/r.json'), undefined);
    assert.equal((await readAll((await f.view.open('pointers/r.json'))!.body!)).toString(), 'v1');
    assert.equal((await readAll((await f.local.open('pointers/r.json'))!.body!)).toString(), 'v1', 'a read keeps a local copy');

    // The other replica moves it: the next read replaces the local copy.
    await f.shared.inner.delete('pointers/r.json');
    await writeStream(f.shared.inner, 'pointers/r.json', ['v2']);
    assert.equal((await readAll((await f.view.open('pointers/r.json'))!.body!)).toString(), 'v2');

    f.shared.faults.open = outage();
    f.shared.faults.stat = outage();
    await f.clock.advance(59_000);
    assert.equal((await readAll((await f.view.open('pointers/r.json'))!.body!)).toString(), 'v2', 'served from the local copy');
    assert.equal((await f.view.stat('pointers/r.json'))?.size, 2);
    assert.deepEqual(f.staleReads, ['pointers/r.json']);
    assert.equal(f.guard.state, 'degraded');

    await f.clock.advance(2_000);
    await assert.rejects(f.view.open('pointers/r.json'), UnavailableError, 'past the limit the outage stands');
    // A key we never saw is not a miss during an outage: we cannot know it is absent.
    await assert.rejects(f.view.open('pointers/other.json'), UnavailableError);
    // Keys without a staleness limit never answer locally.
    await writeStream(f.local, 'records/x.json', ['r']);
    await assert.rejects(f.view.open('records/x.json'), UnavailableError);
  } finally {
    await f.guard.close();
    await f.local.close();
  }
});

void test('view: a key the shared tier no longer has is dropped locally, so an outage cannot resurrect it', async () => {
  const f = viewFixture(60_000);
  try {
    await writeStream(f.shared.inner, 'pointers/r.json', ['v1']);
    await f.view.open('pointers/r.json').then((r) => readAll(r!.body!));
    await f.shared.inner.delete('pointers/r.json');
    assert.equal(await f.view.open('pointers/r.json'), undefined);
    assert.equal(await f.local.stat('pointers/r.json'), undefined);
    f.shared.faults.open = outage();
    await assert.rejects(f.view.open('pointers/r.json'), UnavailableError);
  } finally {
    await f.guard.close();
    await f.local.close();
  }
});
