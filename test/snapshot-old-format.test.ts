/**
 * End to end: snapshots of older formats keep being served, at the stable and the immutable URL,
 * beside the new-format snapshot that supersedes them, until retention removes them after the grace
 * period (driven by an explicit clock, no waiting): a v3 one (one zstd frame, no frame table, no
 * `frames` in its record, as cachew wrote them before layers and frames) and a v4 one (framed, with
 * its table, layers cut by the base-2 rule that v5 replaced).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { runGit } from '../src/git/command.js';
import { generateSnapshot } from '../src/git/snapshot/archive.js';
import { SNAPSHOT_FORMAT_VERSION } from '../src/git/snapshot/format.js';
import { collectGarbage } from '../src/storage/retention.js';
import { SnapshotStore } from '../src/storage/store.js';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { get } from './harness/http.js';

const GRACE_MS = 60 * 60_000;

let upstream: Upstream;
let cachew: TestCachew;
let scratch: string;

before(async () => {
  upstream = await startUpstream();
  cachew = await startCachew([upstream], { snapshotGraceMs: GRACE_MS });
  scratch = await mkdtemp(join(tmpdir(), 'cachew-old-format-'));
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** An archive the way a v2 generation looked to a client: `tar | zstd` of a clone, one frame. */
async function oldFormatArchive(commitUrl: string, out: string): Promise<void> {
  const clone = join(scratch, 'clone');
  await runGit(['clone', '-q', commitUrl, clone]);
  const child = spawn('sh', ['-c', `tar -C '${clone}' -cf - . | zstd -3 -T0 -q -o '${out}'`], { stdio: 'ignore' });
  const [code] = (await once(child, 'close')) as [number | null];
  assert.equal(code, 0);
  await rm(clone, { recursive: true, force: true });
}

test('an old-format snapshot is served until retention removes it', { timeout: 120_000 }, async () => {
  const url = await upstream.createRepo('org/old', { 'a.txt': 'one\n' });
  const first = (await runGit(['ls-remote', url, 'refs/heads/main'])).split('\t')[0];
  const host = upstream.hostName;
  const store = new SnapshotStore({ cache: cachew.server.cache, graceMs: GRACE_MS });
  const archive = join(scratch, 'old.tar.zst');
  await oldFormatArchive(url, archive);
  const bytes = await readFile(archive);
  const digest = createHash('sha256').update(bytes).digest('hex');
  const old = await store.publish({
    host,
    repo: 'org/old',
    commit: first,
    file: archive,
    sha256: digest,
    size: bytes.length,
    format: 'cachew-snapshot-v3;zstd-1.5.4;git-2.39.5',
    isAncestor: async () => true,
  });
  assert.equal(old.frames, undefined);

  // The stable URL serves it as the current snapshot (upstream has not moved): no regeneration.
  const base = `${cachew.url}/git/${host}/org/old`;
  const stable = await get(`${base}/snapshot.tar.zst`);
  assert.equal(stable.status, 200);
  assert.equal(stable.headers.get('etag'), `"${digest}"`);
  assert.equal(createHash('sha256').update(stable.body).digest('hex'), digest);

  // Upstream moves on; a v4 snapshot (framed, with a table) of the next commit becomes current.
  const second = await upstream.commit('org/old', { 'a.txt': 'two\n' });
  const v4Archive = join(scratch, 'v4.tar.zst');
  const v4Mirror = join(scratch, 'v4.git');
  await runGit(['clone', '-q', '--mirror', url, v4Mirror]);
  const v4 = await generateSnapshot({ gitDir: v4Mirror, commit: second, upstreamUrl: url, defaultBranch: 'main' }, v4Archive);
  const v4Record = await store.publish({
    host,
    repo: 'org/old',
    commit: second,
    file: v4Archive,
    sha256: v4.sha256,
    size: v4.size,
    format: 'cachew-snapshot-v4;zstd-1.5.4;git-2.39.5',
    frames: v4.frames,
    isAncestor: async () => true,
  });
  assert.deepEqual(v4Record.frames, v4.frames);
  const stableV4 = await get(`${base}/snapshot.tar.zst`);
  assert.equal(stableV4.status, 200);
  assert.equal(stableV4.headers.get('etag'), `"${v4.sha256}"`, 'the v4 snapshot is current: no regeneration');

  // Upstream moves again; the new snapshot has the current format, and both old ones still serve.
  const third = await upstream.commit('org/old', { 'a.txt': 'three\n' });
  const res = await fetch(`${cachew.url}/api/v1/git/${host}/org/old/snapshots`, { method: 'POST' });
  assert.equal(res.status, 200);
  const made = (await res.json()) as { commit: string; digest: string };
  assert.equal(made.commit, third);
  const current = await store.record(host, 'org/old', third);
  assert.ok((current?.format ?? '').startsWith(`${SNAPSHOT_FORMAT_VERSION};`), `current format: ${current?.format}`);
  assert.ok((current?.frames?.length ?? 0) > 0, 'the new record carries its frame table');
  for (const [commit, etag] of [[first, digest], [second, v4.sha256]]) {
    const immutable = await get(`${base}/snapshot/${commit}.tar.zst`);
    assert.equal(immutable.status, 200);
    assert.equal(immutable.headers.get('etag'), `"${etag}"`);
  }

  // Within the grace period retention keeps them; past it, the old snapshots and their blobs are gone.
  await collectGarbage(cachew.server.cache, { host, repo: 'org/old', graceMs: GRACE_MS, now: Date.now() });
  assert.equal((await get(`${base}/snapshot/${first}.tar.zst`, {}, 'HEAD')).status, 200);
  assert.equal((await get(`${base}/snapshot/${second}.tar.zst`, {}, 'HEAD')).status, 200);
  await collectGarbage(cachew.server.cache, { host, repo: 'org/old', graceMs: GRACE_MS, now: Date.now() + GRACE_MS + 1000 });
  for (const [commit, blob] of [[first, digest], [second, v4.sha256]]) {
    assert.equal((await get(`${base}/snapshot/${commit}.tar.zst`, {}, 'HEAD')).status, 404);
    assert.equal(await cachew.server.cache.stat(`blobs/sha256/${blob}`), undefined);
  }
  assert.equal((await get(`${base}/snapshot/${third}.tar.zst`, {}, 'HEAD')).status, 200);
});
