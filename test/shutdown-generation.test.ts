/**
 * End-to-end: shutting cachewd down stops a snapshot generation that is still running (it takes the
 * shutdown signal) instead of waiting for it, and publishes nothing.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew } from './harness/cachew.js';
import { waitFor } from './harness/http.js';
import { AbortedError } from '../src/util/errors.js';

let upstream: Upstream;
let stateDir: string;

before(async () => {
  upstream = await startUpstream();
  // Large enough that generating its snapshot takes a while (seconds), so shutdown lands in the middle.
  await upstream.createRepo('org/slow', { 'data.b64': randomBytes(16 * 1024 * 1024).toString('base64') });
  stateDir = await mkdtemp(join(tmpdir(), 'cachew-shutdown-'));
});
after(async () => {
  await upstream?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

test('close() aborts a background generation; a restart finds no snapshot of it', { timeout: 120_000 }, async () => {
  const cachew = await startCachew([upstream], {}, { stateDir });
  // Mirror the repository first (through the git routes), so that what close() interrupts is the generation.
  const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' };
  await promisify(execFile)('git', ['ls-remote', `${cachew.url}/git/${upstream.hostName}/org/slow.git`], { env });
  const generation = cachew.server.service.snapshotNow(upstream.hostName, 'org/slow');
  generation.catch(() => undefined);
  // The archive being written is the sign that the generation is under way (bounded wait).
  const work = join(stateDir, 'tmp');
  await waitFor(async () => ((await readdir(work).catch(() => [])).some((n) => n.startsWith('snapshot-')) ? true : undefined), 60_000, 20);
  await cachew.stop();
  await assert.rejects(generation, (err: unknown) => err instanceof AbortedError || (err as Error).name === 'AbortedError');

  const again = await startCachew([upstream], {}, { stateDir });
  try {
    const records = [];
    for await (const meta of again.server.cache.list('records/')) records.push(meta.key);
    assert.deepEqual(records, [], 'nothing was published');
  } finally {
    await again.stop();
  }
});
