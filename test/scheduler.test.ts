/**
 * End-to-end: with --snapshot-interval > 0, every mirrored repository (even one only ever cloned
 * through the git routes) gets a snapshot without anyone asking; an unchanged head is not regenerated;
 * a new upstream commit is picked up by the next tick.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { ManualClock } from '../src/util/testing/manual-clock.js';

let upstream: Upstream;
let cachew: TestCachew;
let tmp: string;
const clock = new ManualClock();

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-sched-'));
  upstream = await startUpstream();
  await upstream.createRepo('org/tick', { 'a.txt': 'a\n' });
  cachew = await startCachew([upstream], { snapshotIntervalMs: 700 }, { clock });
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  await rm(tmp, { recursive: true, force: true });
});

async function snapshots(): Promise<Array<{ commit: string; current: boolean }>> {
  const res = await fetch(`${cachew.url}/api/v1/git/${upstream.hostName}/org/tick/snapshots`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { snapshots: Array<{ commit: string; current: boolean }> }).snapshots;
}

async function generations(): Promise<number> {
  const text = await cachew.server.metrics.registry.getSingleMetricAsString('cachew_snapshot_generations_total');
  return Number(/outcome="ok"\} (\d+)/.exec(text)?.[1] ?? 0);
}

/** Upstream fetches the mirrors made (each tick fetches every mirrored repository once). */
async function fetches(): Promise<number> {
  const text = await cachew.server.metrics.registry.getSingleMetricAsString('cachew_git_operations_total');
  return Number(/op="fetch",outcome="ok"\} (\d+)/.exec(text)?.[1] ?? 0);
}

test('scheduled snapshots follow upstream and skip unchanged heads', { timeout: 120_000 }, async () => {
  // Only a git clone through the proxy: no snapshot request at all. (Async: the server is in-process.)
  await promisify(execFile)('git', ['clone', '-q', `${cachew.url}/git/${upstream.hostName}/org/tick.git`, join(tmp, 'c')], {
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' },
  });
  const first = await upstream.head('org/tick');
  assert.equal(await generations(), 0, 'nothing before the first tick');
  // advance() resolves once the tick it fired has finished (fetch, and generation if needed).
  await clock.advance(700);
  assert.ok((await snapshots()).some((s) => s.commit === first && s.current));
  assert.equal(await generations(), 1);

  // Several ticks with an unchanged head: each fetches, none regenerates.
  const fetched = await fetches();
  await clock.advance(3 * 700);
  assert.equal(await fetches(), fetched + 3, 'three ticks ran');
  assert.equal(await generations(), 1);

  const second = await upstream.commit('org/tick', { 'b.txt': 'b\n' });
  await clock.advance(700);
  assert.ok((await snapshots()).some((s) => s.commit === second && s.current));
  assert.equal(await generations(), 2);
});
