/**
 * End-to-end: the real git client cloning, fetching and pushing through cachew's smart-HTTP proxy,
 * against a real upstream (git http-backend). Asserts what reaches upstream, not just what the client sees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { runGit } from '../src/git/command.js';
import { GitCommandError } from '../src/util/errors.js';
import { pktLine } from '../src/git/pkt-line.js';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew } from './harness/cachew.js';
import { ManualClock } from '../src/util/testing/manual-clock.js';

interface Proxy {
  url: string;
  stateDir: string;
  stop(): Promise<void>;
}

/** The whole cachewd (startServer) on a free loopback port with its own temp state dir. */
function startProxy(up: Upstream, options: ProxyOptions): Promise<Proxy> {
  return startCachew([up], { readOnly: options.readOnly ?? false, refCheckIntervalMs: options.refCheckIntervalMs ?? 1000 }, { clock: options.clock });
}

interface ProxyOptions {
  readOnly?: boolean;
  refCheckIntervalMs?: number;
  /** Drives the ref-check interval instead of real time. */
  clock?: ManualClock;
}

interface World {
  up: Upstream;
  tmp: string;
  proxy(options?: ProxyOptions): Promise<Proxy>;
  /** Runs the git client with a config isolated from the host's. */
  git(args: string[], cwd?: string): Promise<string>;
}

async function world(t: { after(fn: () => Promise<void>): void }): Promise<World> {
  const up = await startUpstream();
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-git-proxy-'));
  const proxies: Proxy[] = [];
  t.after(async () => {
    for (const p of proxies) await p.stop();
    await up.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  });
  return {
    up,
    tmp,
    async proxy(options = {}) {
      const p = await startProxy(up, options);
      proxies.push(p);
      return p;
    },
    git(args, cwd = tmp) {
      return runGit(['-c', 'credential.helper=', '-c', 'protocol.version=2', ...args], {
        cwd,
        env: { HOME: tmp, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1' },
        timeoutMs: 120_000,
      });
    },
  };
}

const proxyRepoUrl = (proxy: Proxy, up: Upstream, repo: string): string => `${proxy.url}/git/${up.hostName}/${repo}`;

/** `<sha> <ref>` lines for branches and tags, sorted: comparable between a clone and upstream. */
async function upstreamRefs(w: World, url: string): Promise<string> {
  const out = await w.git(['ls-remote', '--heads', '--tags', url]);
  return out.trim().split('\n').sort().join('\n');
}

const upstreamHits = (up: Upstream, since: number): Array<{ method: string; path: string }> => up.requests.slice(since);

void test('clone and fetch through the proxy, v0 and v2, by URL and by insteadOf; shallow and partial', { timeout: 180_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/app', {
    'README.md': '# app\n',
    'bin/tool': { content: '#!/bin/sh\necho tool\n', mode: '100755' },
    'docs/link': { content: '../README.md', mode: '120000' },
    'yarn.lock': 'lock\n',
  });
  await w.up.commit('org/app', { 'src/a.ts': 'export const a = 1;\n' });
  await w.up.commit('org/app', { 'src/b.ts': 'export const b = 2;\n' });
  const proxy = await w.proxy({ refCheckIntervalMs: 60_000 });
  const url = proxyRepoUrl(proxy, w.up, 'org/app.git');
  const expected = await upstreamRefs(w, `${w.up.url}/org/app.git`);

  for (const version of ['0', '2']) {
    const dir = path.join(w.tmp, `v${version}`);
    await w.git(['-c', `protocol.version=${version}`, 'clone', '-q', url, dir]);
    assert.equal(await upstreamRefs(w, dir), expected, `protocol v${version}: same refs as upstream`);
    await w.git(['fsck', '--strict', '--no-progress'], dir);
    assert.equal((await w.git(['status', '--porcelain'], dir)).trim(), '');
    assert.equal(await fs.readlink(path.join(dir, 'docs/link')), '../README.md');
    await w.git(['-c', `protocol.version=${version}`, 'fetch', '-q', 'origin'], dir);
  }

  // Within the ref-check interval the mirror answers alone.
  const before = w.up.requests.length;
  await w.git(['clone', '-q', url, path.join(w.tmp, 'again')]);
  await w.git(['clone', '-q', '--depth', '1', url, path.join(w.tmp, 'shallow')]);
  assert.equal((await w.git(['rev-list', '--count', 'HEAD'], path.join(w.tmp, 'shallow'))).trim(), '1');
  const partial = path.join(w.tmp, 'partial');
  await w.git(['clone', '-q', '--filter=blob:none', url, partial]);
  assert.equal((await w.git(['config', 'remote.origin.partialclonefilter'], partial)).trim(), 'blob:none');
  await w.git(['fsck', '--no-progress'], partial);
  assert.deepEqual(upstreamHits(w.up, before), [], 'no request reached upstream');

  // insteadOf: the client keeps using the upstream URL; origin stays the upstream URL.
  const via = path.join(w.tmp, 'insteadof');
  await w.git(['-c', `url.${proxy.url}/git/${w.up.hostName}/.insteadOf=${w.up.url}/`, 'clone', '-q', `${w.up.url}/org/app.git`, via]);
  assert.equal((await w.git(['remote', 'get-url', 'origin'], via)).trim(), `${w.up.url}/org/app.git`);
  assert.equal(await upstreamRefs(w, via), expected);
  assert.deepEqual(upstreamHits(w.up, before), [], 'the insteadOf clone was served by the proxy');
});

void test('ten concurrent first clones cause one upstream clone', { timeout: 180_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/popular', { 'f.txt': 'f\n' });
  const proxy = await w.proxy({ refCheckIntervalMs: 60_000 });
  const url = proxyRepoUrl(proxy, w.up, 'org/popular');
  await Promise.all(Array.from({ length: 10 }, (_, i) => w.git(['clone', '-q', url, path.join(w.tmp, `c${i}`)])));
  const refsRequests = w.up.requests.filter((r) => r.path.includes('/info/refs'));
  assert.equal(refsRequests.length, 1, JSON.stringify(w.up.requests));
  for (let i = 0; i < 10; i++) assert.equal((await w.git(['rev-parse', 'HEAD'], path.join(w.tmp, `c${i}`))).trim(), await w.up.head('org/popular'));
});

void test('pushes and force-pushes upstream are seen after the ref-check interval', { timeout: 180_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/live');
  const clock = new ManualClock();
  const proxy = await w.proxy({ refCheckIntervalMs: 1000, clock });
  const dir = path.join(w.tmp, 'live');
  await w.git(['clone', '-q', proxyRepoUrl(proxy, w.up, 'org/live'), dir]);

  const pushed = await w.up.commit('org/live', { 'n.txt': 'n\n' });
  await w.git(['fetch', '-q', 'origin'], dir);
  assert.notEqual((await w.git(['rev-parse', 'origin/main'], dir)).trim(), pushed, 'within the interval the mirror is not re-checked');
  await clock.advance(1000);
  await w.git(['fetch', '-q', 'origin'], dir);
  assert.equal((await w.git(['rev-parse', 'origin/main'], dir)).trim(), pushed);

  const rewritten = await w.up.forcePush('org/live', { 'other.txt': 'o\n' });
  await clock.advance(1000);
  await w.git(['-c', 'protocol.version=0', 'fetch', '-q', 'origin'], dir);
  assert.equal((await w.git(['rev-parse', 'origin/main'], dir)).trim(), rewritten);
  await w.git(['fsck', '--no-progress'], dir);
});

void test('a want the stale mirror lacks is fetched, not refused', { timeout: 180_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/stale');
  const proxy = await w.proxy({ refCheckIntervalMs: 600_000 });
  const dir = path.join(w.tmp, 'stale');
  const url = proxyRepoUrl(proxy, w.up, 'org/stale');
  await w.git(['clone', '-q', url, dir]);
  const fresh = await w.up.commit('org/stale', { 'x.txt': 'x\n' });
  // The mirror does not advertise `fresh` yet (interval not over), but a client may ask for it by id.
  const before = w.up.requests.length;
  await w.git(['fetch', '-q', 'origin', fresh], dir);
  assert.equal((await w.git(['cat-file', '-t', fresh], dir)).trim(), 'commit');
  // Served by the mirror after one fetch of its own (which starts with GET info/refs), not forwarded.
  const mirrorDir = path.join(proxy.stateDir, 'mirrors', w.up.hostName, 'org/stale.git');
  assert.equal((await w.git(['cat-file', '-t', fresh], mirrorDir)).trim(), 'commit');
  assert.equal(upstreamHits(w.up, before).filter((r) => r.method === 'GET' && r.path.includes('/info/refs')).length, 1);
});

void test('git push through the proxy lands upstream; read-only refuses with 403', { timeout: 180_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/push');
  const proxy = await w.proxy();
  const dir = path.join(w.tmp, 'push');
  await w.git(['clone', '-q', proxyRepoUrl(proxy, w.up, 'org/push'), dir]);
  await fs.writeFile(path.join(dir, 'p.txt'), 'p\n');
  await w.git(['add', 'p.txt'], dir);
  await w.git(['commit', '-q', '-m', 'through the proxy'], dir);
  await w.git(['push', '-q', 'origin', 'HEAD:main'], dir);
  const local = (await w.git(['rev-parse', 'HEAD'], dir)).trim();
  assert.equal(await w.up.head('org/push'), local);
  assert.ok(w.up.requests.some((r) => r.method === 'POST' && r.path.endsWith('/git-receive-pack')));

  const readOnly = await w.proxy({ readOnly: true });
  await w.git(['remote', 'set-url', 'origin', proxyRepoUrl(readOnly, w.up, 'org/push')], dir);
  await fs.writeFile(path.join(dir, 'q.txt'), 'q\n');
  await w.git(['add', 'q.txt'], dir);
  await w.git(['commit', '-q', '-m', 'refused'], dir);
  await assert.rejects(w.git(['push', '-q', 'origin', 'HEAD:main'], dir), (err: unknown) => err instanceof GitCommandError && /403/.test(err.stderrTail));
  assert.equal(await w.up.head('org/push'), local, 'upstream unchanged');
  const res = await fetch(`${proxyRepoUrl(readOnly, w.up, 'org/push')}/info/refs?service=git-receive-pack`);
  assert.equal(res.status, 403);
  assert.match(await res.text(), /read-only/);
});

void test('upstream down: mirrored repos still clone, a new repository is 502', { timeout: 180_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/cached');
  await w.up.createRepo('org/uncached');
  const proxy = await w.proxy({ refCheckIntervalMs: 1 });
  await w.git(['clone', '-q', proxyRepoUrl(proxy, w.up, 'org/cached'), path.join(w.tmp, 'first')]);
  w.up.setDown(true);
  const dir = path.join(w.tmp, 'while-down');
  await w.git(['clone', '-q', proxyRepoUrl(proxy, w.up, 'org/cached'), dir]);
  assert.equal((await w.git(['rev-parse', 'HEAD'], dir)).trim(), await w.up.head('org/cached'));

  const res = await fetch(`${proxyRepoUrl(proxy, w.up, 'org/uncached')}/info/refs?service=git-upload-pack`);
  assert.equal(res.status, 502);
  assert.doesNotMatch(await res.text(), /\/tmp|\n./, 'one line, no internal paths');
  w.up.setDown(false);
  const missing = await fetch(`${proxyRepoUrl(proxy, w.up, 'org/nope')}/info/refs?service=git-upload-pack`);
  assert.equal(missing.status, 404);
  await missing.arrayBuffer();
});

void test('raw smart-HTTP: gzip request bodies, v2 advertisement, forwarding of other paths', { timeout: 180_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/raw');
  const proxy = await w.proxy();
  const base = proxyRepoUrl(proxy, w.up, 'org/raw.git');

  const v0 = await fetch(`${base}/info/refs?service=git-upload-pack`);
  assert.equal(v0.status, 200);
  assert.equal(v0.headers.get('content-type'), 'application/x-git-upload-pack-advertisement');
  assert.match(v0.headers.get('cache-control') ?? '', /no-cache/);
  const v0Body = await v0.text();
  assert.ok(v0Body.startsWith('001e# service=git-upload-pack\n0000'), v0Body.slice(0, 40));
  assert.match(v0Body, /refs\/heads\/main/);

  const v2 = await fetch(`${base}/info/refs?service=git-upload-pack`, { headers: { 'git-protocol': 'version=2' } });
  const v2Body = await v2.text();
  assert.ok(v2Body.startsWith('000eversion 2\n'), v2Body.slice(0, 40));

  const lsRefs = Buffer.concat([pktLine('command=ls-refs\n'), Buffer.from('0001'), pktLine('symrefs\n'), Buffer.from('0000')]);
  const res = await fetch(`${base}/git-upload-pack`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-git-upload-pack-request', 'content-encoding': 'gzip', 'git-protocol': 'version=2' },
    body: gzipSync(lsRefs),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/x-git-upload-pack-result');
  assert.match(await res.text(), new RegExp(`${await w.up.head('org/raw')} HEAD symref-target:refs/heads/main`));

  const bad = await fetch(`${base}/git-upload-pack`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
  assert.equal(bad.status, 400);
  await bad.arrayBuffer();

  const before = w.up.requests.length;
  const lfs = await fetch(`${base}/info/lfs/objects/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.git-lfs+json', authorization: 'Bearer client-token' },
    body: '{"operation":"download","objects":[]}',
  });
  await lfs.arrayBuffer();
  assert.deepEqual(upstreamHits(w.up, before), [{ method: 'POST', path: '/org/raw.git/info/lfs/objects/batch' }]);
});

void test('hostile paths get 4xx and create nothing; unconfigured hosts are never contacted', { timeout: 60_000 }, async (t) => {
  const w = await world(t);
  await w.up.createRepo('org/ok');
  const proxy = await w.proxy();
  let contacted = 0;
  const bystander = http.createServer((_req, res) => {
    contacted++;
    res.end();
  });
  bystander.on('connection', () => contacted++);
  await new Promise<void>((resolve) => bystander.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => bystander.close(() => resolve())));
  const otherHost = `127.0.0.1:${(bystander.address() as AddressInfo).port}`;

  const host = w.up.hostName;
  const hostile = [
    `/git/${host}/../org/ok/info/refs?service=git-upload-pack`,
    `/git/${host}/org/%2e%2e/info/refs?service=git-upload-pack`,
    `/git/${host}/%2e%2e/%2e%2e/info/refs?service=git-upload-pack`,
    `/git/${host}/org/a%00b/info/refs?service=git-upload-pack`,
    `/git/${host}/${Array.from({ length: 12 }, () => 'd').join('/')}/info/refs?service=git-upload-pack`,
    `/git/${host}/org/${'x'.repeat(300)}/info/refs?service=git-upload-pack`,
    `/git/${host}/.hidden/repo/info/refs?service=git-upload-pack`,
    `/git/${host}/org/.repo/git-upload-pack`,
    `/git/${otherHost}/org/ok/info/refs?service=git-upload-pack`,
    `/git/${otherHost}/org/ok/info/lfs/objects/batch`,
  ];
  for (const p of hostile) {
    const res = await rawGet(proxy.url, p);
    assert.ok(res >= 400 && res < 500, `${p} → ${res}`);
  }
  assert.equal(contacted, 0, 'unconfigured host never contacted');
  assert.deepEqual(w.up.requests, [], 'nothing reached upstream');
  const mirrorsDir = path.join(proxy.stateDir, 'mirrors');
  const entries = existsSync(mirrorsDir) ? (await fs.readdir(mirrorsDir)).filter((e) => e !== '.tmp') : [];
  assert.deepEqual(entries, [], 'nothing created under the state dir');
});

/** A GET with the path sent byte for byte (fetch would normalise `..`). */
function rawGet(base: string, rawPath: string): Promise<number> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path: rawPath, method: 'GET', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}
