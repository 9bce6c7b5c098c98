import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from './manual-clock.js';

void test('ManualClock fires due timers in order at their own instant and awaits them', async () => {
  const clock = new ManualClock(1000);
  const fired: string[] = [];
  clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
  clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
  const every = clock.setInterval(async () => {
    await new Promise((resolve) => setImmediate(resolve));
    fired.push(`tick@${clock.now()}`);
  }, 15);
  const never = clock.setTimeout(() => fired.push('cancelled'), 5);
  never.cancel();
  await clock.advance(9);
  assert.deepEqual(fired, []);
  assert.equal(clock.now(), 1009);
  await clock.advance(21);
  assert.deepEqual(fired, ['a@1010', 'tick@1015', 'b@1020', 'tick@1030']);
  every.cancel();
  await clock.advance(100);
  assert.equal(fired.length, 4);
  assert.equal(clock.pendingTimers, 0);
});

void test('ManualClock.advance rejects when a callback fails', async () => {
  const clock = new ManualClock(0);
  clock.setTimeout(() => Promise.reject(new Error('tick failed')), 1);
  await assert.rejects(clock.advance(1), /tick failed/);
});
