import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Scheduler, type ScheduledService } from './scheduler.js';
import { silentLogger } from '../util/logger.js';
import { ManualClock } from '../util/testing/manual-clock.js';

type Repo = { host: string; repo: string };

/** A service stub that records what the scheduler asked of it. */
function fakeService(): ScheduledService & { refreshed: string[]; collected: string[][] } {
  const refreshed: string[] = [];
  const collected: string[][] = [];
  return {
    refreshed,
    collected,
    refresh: (host, repo) => {
      refreshed.push(`${host}/${repo}`);
      return Promise.resolve(undefined);
    },
    collectGarbage: (repos) => {
      collected.push([...repos].map((r) => `${r.host}/${r.repo}`).sort());
      return Promise.resolve();
    },
  };
}

void test('snapshot and retention ticks cover the mirror inventory', async () => {
  const clock = new ManualClock(0);
  const service = fakeService();
  const inventory = [{ host: 'h', repo: 'mirrored-before-restart' }, { host: 'h', repo: 'served' }];
  const scheduler = new Scheduler({ service, snapshotIntervalMs: 100, retentionIntervalMs: 250, listRepos: () => Promise.resolve(inventory), logger: silentLogger, clock });
  scheduler.start();
  await clock.advance(99);
  assert.deepEqual(service.refreshed, [], 'nothing before the first tick');
  await clock.advance(1);
  assert.deepEqual(service.refreshed.sort(), ['h/mirrored-before-restart', 'h/served']);
  await clock.advance(150);
  assert.deepEqual(service.collected, [['h/mirrored-before-restart', 'h/served']], 'retention sees the inventory too');
  assert.equal(service.refreshed.length, 4, 'two snapshot ticks by t=250');
  await scheduler.stop();
  await clock.advance(1000);
  assert.equal(service.refreshed.length, 4, 'no tick after stop()');
  assert.equal(clock.pendingTimers, 0);
});

void test('a tick that cannot read the inventory does nothing; the next tick reads it again', async () => {
  const clock = new ManualClock(0);
  const service = fakeService();
  let calls = 0;
  const listRepos = (): Promise<Repo[]> => (++calls === 1 ? Promise.reject(new Error('disk gone')) : Promise.resolve([{ host: 'h', repo: 'served' }]));
  const scheduler = new Scheduler({ service, snapshotIntervalMs: 10, retentionIntervalMs: 1000, listRepos, logger: silentLogger, clock });
  scheduler.start();
  await clock.advance(10);
  assert.deepEqual(service.refreshed, []);
  await clock.advance(10);
  assert.deepEqual(service.refreshed, ['h/served']);
  await scheduler.stop();
});
