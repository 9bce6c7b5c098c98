import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleFlight } from './single-flight.js';

test('concurrent calls with one key share one run; a new call after it settles runs again', async () => {
  const flight = new SingleFlight<number>();
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const work = async (): Promise<number> => {
    runs++;
    await gate;
    return runs;
  };
  const calls = [flight.run('repo@a', work), flight.run('repo@a', work), flight.run('repo@a', work)];
  assert.equal(flight.anyRunning('repo@'), true);
  assert.equal(flight.anyRunning('other@'), false);
  release();
  assert.deepEqual(await Promise.all(calls), [1, 1, 1]);
  assert.equal(flight.anyRunning('repo@'), false);
  assert.equal(await flight.run('repo@a', work), 2);
});

test('a failure reaches every waiter and clears the key', async () => {
  const flight = new SingleFlight<void>();
  let fail!: (err: Error) => void;
  const boom = (): Promise<void> => new Promise<void>((_resolve, reject) => (fail = reject));
  // Both calls are made before the work fails, so the second one joins the first.
  const calls = [flight.run('k', boom), flight.run('k', boom)];
  fail(new Error('boom'));
  const results = await Promise.allSettled(calls);
  assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
  assert.equal(flight.anyRunning('k'), false);
  await flight.drain();
});
