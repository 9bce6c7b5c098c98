/**
 * End-to-end statuses for trouble (issue 8, finding 5): client mistakes are 4xx, server and upstream
 * trouble 5xx with a truthful reason, and "this repository cannot be snapshotted" a distinct 422 that
 * the restore client does not retry.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGit } from '../src/git/command.js';
import { pktLine, FLUSH_PKT } from '../src/git/pkt-line.js';
import { restore } from '../src/client/restore.js';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startHostileUpstream, type HostileUpstream } from './harness/hostile-upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { startFaultProxy } from './harness/fault-proxy.js';
import { get } from './harness/http.js';

let upstream: Upstream;
let hostile: HostileUpstream;
let cachew: TestCachew;
let tmp: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-statuses-'));
  upstream = await startUpstream();
  hostile = await startHostileUpstream(upstream);
  await upstream.createRepo('org/app', { 'a.txt': 'a\n' });
  cachew = await startCachew([upstream, hostile]);
});
after(async () => {
  await cachew?.stop();
  await hostile?.stop();
  await upstream?.stop();
  await rm(tmp, { recursive: true, force: true });
});

const repoBase = (host: string, repo: string): string => `${cachew.url}/git/${host}/${repo}`;

async function postUploadPack(body: Buffer, gitProtocol?: string): Promise<{ status: number; text: string }> {
  const headers: Record<string, string> = { 'content-type': 'application/x-git-upload-pack-request' };
  if (gitProtocol) headers['git-protocol'] = gitProtocol;
  const res = await fetch(`${repoBase(upstream.hostName, 'org/app')}/git-upload-pack`, { method: 'POST', headers, body: new Uint8Array(body) });
  return { status: res.status, text: await res.text() };
}

test('malformed upload-pack requests are 400, never 502 with git stderr', { timeout: 120_000 }, async () => {
  const cases: Array<[string, Buffer, string?]> = [
    ['framed, not a request', Buffer.concat([pktLine('hello\n'), FLUSH_PKT])],
    ['only a flush', FLUSH_PKT],
    ['empty body', Buffer.alloc(0)],
    ['bad framing', Buffer.from('zzzz-not-pkt-lines')],
    ['v2 unknown command', Buffer.concat([pktLine('command=frobnicate\n'), FLUSH_PKT]), 'version=2'],
    ['v0 want of a malformed id', Buffer.concat([pktLine(`want ${'z'.repeat(40)}\n`), FLUSH_PKT, pktLine('done\n')])],
  ];
  for (const [name, body, protocol] of cases) {
    const res = await postUploadPack(body, protocol);
    assert.equal(res.status, 400, `${name}: ${res.status} ${res.text}`);
    assert.doesNotMatch(res.text, /\/tmp|state|mirrors/, `${name}: no server paths in the answer`);
  }
});

test('a repository that cannot be snapshotted is 422, and restore does not retry it', { timeout: 120_000 }, async () => {
  await upstream.createRepo('org/unsafe', { 'ok.txt': 'ok\n' });
  const bare = join(upstream.root, 'org/unsafe.git');
  // git refuses to create such a tree from a working tree; a host that skips fsck may still serve one.
  const blob = (await runGit(['hash-object', '-w', '--stdin'], { cwd: bare, input: 'x\n' })).trim();
  const tree = (await runGit(['mktree'], { cwd: bare, input: `100644 blob ${blob}\t.GIT\n` })).trim();
  const commit = (await runGit(['commit-tree', tree, '-m', 'unsafe'], { cwd: bare })).trim();
  await runGit(['update-ref', 'refs/heads/main', commit], { cwd: bare });

  const res = await get(`${repoBase(upstream.hostName, 'org/unsafe')}/snapshot.tar.zst`);
  assert.equal(res.status, 422, res.body.toString());
  assert.match(res.body.toString(), /cannot be snapshotted/);

  const proxy = await startFaultProxy(cachew.url, () => undefined);
  try {
    const outcome = await restore({
      repoUrl: `${upstream.url}/org/unsafe`,
      dir: join(tmp, 'unsafe'),
      serverUrl: proxy.url,
      maxAttempts: 5,
      backoffMs: 10,
    }).then(
      () => 'restored',
      (err: unknown) => (err as Error).message,
    );
    assert.match(outcome, /422/);
    assert.equal(proxy.requests.filter((r) => r.path.endsWith('/snapshot.tar.zst')).length, 1, 'asked once, not retried');
  } finally {
    await proxy.stop();
  }
});

test('snapshot list: an unknown repository is 404 like every other route; a mirrored one lists', { timeout: 120_000 }, async () => {
  const api = (repo: string): string => `${cachew.url}/api/v1/git/${upstream.hostName}/${repo}/snapshots`;
  assert.equal((await get(api('org/never-seen'))).status, 404);
  assert.equal((await get(`${repoBase(upstream.hostName, 'org/never-seen')}/snapshot.tar.zst`)).status, 404);
  await runGit(['ls-remote', `${repoBase(upstream.hostName, 'org/app')}`], { timeoutMs: 60_000 });
  const listed = await get(api('org/app'));
  assert.equal(listed.status, 200);
  assert.deepEqual(JSON.parse(listed.body.toString()), { snapshots: [] });
});

test('upstream failures are told apart: a reply that is not HTTP is a bad reply, a closed port unreachable', { timeout: 120_000 }, async () => {
  hostile.setMode('garbage');
  const bad = await get(`${repoBase(hostile.hostName, 'org/app')}/info/lfs/objects/batch`);
  assert.equal(bad.status, 502);
  assert.match(bad.body.toString(), /not valid HTTP/);
  assert.doesNotMatch(bad.body.toString(), /unreachable/);
  hostile.setMode('html');
  const html = await get(`${repoBase(hostile.hostName, 'org/app')}/info/refs?service=git-upload-pack`);
  assert.equal(html.status, 502);
  assert.match(html.body.toString(), /bad reply/);
  hostile.setMode({ status: 404 });
  assert.equal((await get(`${repoBase(hostile.hostName, 'org/gone')}/info/refs?service=git-upload-pack`)).status, 404);

  const closed = await startHostileUpstream(upstream);
  await closed.stop();
  const down = await startCachew([closed]);
  try {
    const res = await get(`${down.url}/git/${closed.hostName}/org/app/info/refs?service=git-upload-pack`);
    assert.equal(res.status, 502);
    assert.match(res.body.toString(), /unreachable/);
  } finally {
    await down.stop();
  }
});
