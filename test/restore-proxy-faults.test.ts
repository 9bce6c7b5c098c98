/**
 * End-to-end robustness: `restore()` against the REAL server through a fault-injecting proxy. Every
 * case either succeeds with the server's digest and a clean clone at the snapshot commit, or fails
 * with no target directory and no temporary sibling left.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { startFaultProxy, type ProxiedRequest, type ProxyFault } from './harness/fault-proxy.js';
import { restore } from '../src/client/restore.js';
import { ManualClock } from '../src/util/testing/manual-clock.js';

const exec = promisify(execFile);
let upstream: Upstream;
let cachew: TestCachew;
let tmp: string;
let repoUrl: string;
let etag: string;
let commit: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-proxy-faults-'));
  upstream = await startUpstream();
  // ~1.5 MB of incompressible content: a snapshot of many 64 KiB chunks.
  repoUrl = (await upstream.createRepo('org/faulty', { 'data.b64': randomBytes(1024 * 1024).toString('base64'), 'README.md': 'hi\n' })).replace(/\.git$/, '');
  // A clock that stands still: no request re-checks upstream (a fetch on a loaded machine could outlast
  // the client's 1 s idle timeout that the stall case needs).
  cachew = await startCachew([upstream], {}, { clock: new ManualClock() });
  const head = await fetch(`${cachew.url}/git/${upstream.hostName}/org/faulty/snapshot.tar.zst`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  etag = head.headers.get('etag')!.replaceAll('"', '');
  commit = head.headers.get('x-cachew-snapshot-commit')!;
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  await rm(tmp, { recursive: true, force: true });
});

const isImmutable = (r: ProxiedRequest): boolean => r.path.includes('/snapshot/') && r.method === 'GET';
/** The n-th ranged GET of the immutable URL (1-based) gets the fault, once. */
function onNthImmutable(n: number, fault: ProxyFault): (r: ProxiedRequest) => ProxyFault | undefined {
  let seen = 0;
  return (r) => (isImmutable(r) && ++seen === n ? fault : undefined);
}

async function restoreThrough(name: string, decide: (r: ProxiedRequest) => ProxyFault | undefined) {
  const proxy = await startFaultProxy(cachew.url, decide);
  const dir = join(tmp, name);
  try {
    const result = await restore({
      repoUrl,
      dir,
      serverUrl: proxy.url,
      concurrency: 4,
      chunkSize: 64 * 1024,
      maxAttempts: 3,
      backoffMs: 20,
      idleTimeoutMs: 1000,
    }).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    const siblings = (await readdir(tmp)).filter((n) => n.startsWith(`${name}.cachew-tmp-`));
    assert.deepEqual(siblings, [], 'no temporary sibling left');
    return { result, dir, proxy };
  } finally {
    await proxy.stop();
  }
}

async function assertGoodClone(dir: string): Promise<void> {
  const git = (...args: string[]) => exec('git', ['-C', dir, ...args], { env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null' } });
  assert.equal((await git('rev-parse', 'HEAD')).stdout.trim(), commit);
  assert.equal((await git('status', '--porcelain')).stdout, '');
}

for (const [name, decide, expect] of [
  ['drop-mid-chunk', onNthImmutable(2, 'drop'), 'success'],
  ['stall', onNthImmutable(3, 'stall'), 'success'],
  ['range-ignored', onNthImmutable(1, 'ignore-range'), 'success'],
  ['not-found-once', onNthImmutable(2, 'not-found'), 'success'],
  ['corrupt-one-byte', onNthImmutable(4, 'corrupt'), 'failure'],
] as const) {
  test(`restore through a proxy that injects ${name}`, { timeout: 120_000 }, async () => {
    const { result, dir, proxy } = await restoreThrough(name, decide);
    const outcome = result.ok ? 'restored' : String(result.error);
    assert.ok(proxy.injected.length >= 1, `the fault was injected (${proxy.requests.length} requests, ${outcome})`);
    if (expect === 'success') {
      assert.ok(result.ok, `restore succeeds: ${result.ok ? '' : String(result.error)}`);
      assert.equal(result.value.digest, etag);
      await assertGoodClone(dir);
    } else {
      assert.equal(result.ok, false, 'a corrupted byte is never accepted');
      await assert.rejects(readdir(dir), 'no target directory');
    }
  });
}
