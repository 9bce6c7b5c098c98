/**
 * Limits under misbehaving clients (issue 8, finding 3): idle and slow connections are closed by the
 * header timeout, the connection cap evicts idle connections so health checks still get in while
 * 1,000 idle connections are held, body limits answer 413, and ≥ 500 scripted hostile requests get
 * no 5xx and leave the server healthy. Timeouts are configured short (1 s) so every wait is bounded;
 * each wait is for an event (a close), never a sleep.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { runGit } from '../src/git/command.js';
import { DEFAULT_CONFIG } from '../src/config/types.js';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { allClosed, drip, openIdle, rawRequest, type RawReply } from './harness/raw-http.js';

let upstream: Upstream;
let cachew: TestCachew;
let tmp: string;
const MiB = 1024 * 1024;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-limits-'));
  upstream = await startUpstream();
  await upstream.createRepo('org/app', { 'a.txt': 'a\n' });
  cachew = await startCachew([upstream], {
    http: {
      ...DEFAULT_CONFIG.http,
      headersTimeoutMs: 1000,
      requestTimeoutMs: 3000,
      keepAliveTimeoutMs: 500,
      idleTimeoutMs: 3000,
      maxConnections: 200,
      maxUploadPackBytes: 1 * MiB,
      maxForwardBytes: 1 * MiB,
    },
  });
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

const health = async (): Promise<number[]> => [(await fetch(`${cachew.url}/_liveness`)).status, (await fetch(`${cachew.url}/_readiness`)).status];

test('1,000 idle connections: health answers at once, and the server closes them all', { timeout: 120_000 }, async () => {
  const idle = await openIdle(cachew.url, 1000);
  try {
    assert.deepEqual(await health(), [200, 200], 'liveness and readiness answer while the idle connections are held');
    // Every one of them is closed by the server: evicted for newer ones at the cap of 200, or cut by
    // the 1 s header timeout. Waiting for the close events is bounded by the test timeout.
    await allClosed(idle);
  } finally {
    for (const s of idle) s.destroy();
  }
  const slow = await Promise.all(Array.from({ length: 20 }, () => drip(cachew.url, 200, 15_000)));
  for (const reply of slow) {
    assert.ok(reply.closedByServer, 'a header dribbled byte by byte is cut by the header timeout');
    assert.ok(reply.status === undefined || reply.status === 408, `status ${reply.status}`);
  }
  assert.deepEqual(await health(), [200, 200]);
});

test('body limits on every route: 413, declared or streamed', { timeout: 60_000 }, async () => {
  const api = await fetch(`${cachew.url}/api/v1/git/${upstream.hostName}/org/app/snapshots`, { method: 'POST', body: new Uint8Array(128 * 1024) });
  assert.equal(api.status, 413);
  await api.arrayBuffer();
  const base = `${cachew.url}/git/${upstream.hostName}/org/app`;
  const declared = await fetch(`${base}/git-upload-pack`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-git-upload-pack-request' },
    body: new Uint8Array(2 * MiB),
  });
  assert.equal(declared.status, 413);
  await declared.arrayBuffer();
  // A small gzip body that inflates past the limit is counted after inflating.
  const bomb = gzipSync(Buffer.alloc(4 * MiB, 0x30));
  const inflated = await fetch(`${base}/git-upload-pack`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-git-upload-pack-request', 'content-encoding': 'gzip' },
    body: new Uint8Array(bomb),
  });
  assert.equal(inflated.status, 413);
  await inflated.arrayBuffer();
});

/** One scripted hostile request: a label and what to send on a fresh connection. */
type Hostile = { kind: string; send: () => Promise<RawReply> };

function hostileRequests(host: string): Hostile[] {
  const url = cachew.url;
  const list: Hostile[] = [];
  const raw = (kind: string, data: string | Buffer, deadline = 10_000): void => {
    list.push({ kind, send: () => rawRequest(url, data, deadline) });
  };
  const get = (target: string, method = 'GET', extra = ''): string => `${method} ${target} HTTP/1.1\r\nHost: cachew\r\n${extra}Connection: close\r\n\r\n`;

  const badPaths = [
    '/git/../../etc/passwd',
    '/git/%2e%2e/%2e%2e/etc/passwd',
    `/git/${host}/../../x/info/refs`,
    `/git/${host}/org/app/../../../info/refs`,
    '/%00',
    `/git/${host}/org%00/app/info/refs`,
    `/${'a'.repeat(8000)}`,
    `/git/${host}/${'a/'.repeat(50)}info/refs`,
    '/git/unknown.example/org/app/info/refs?service=git-upload-pack',
    `/git/${host}/.git/info/refs`,
    `/git/${host}/org/.hidden/info/refs`,
    `/api/v1/git/${host}/org/app/../snapshots`,
    `/git/${host}/org/app/snapshot/../../x.tar.zst`,
    `/git/${host}/org/app/snapshot/${'g'.repeat(40)}.tar.zst`,
    '/metrics/../_liveness',
    '//git//',
    '/git/%ZZ',
    `/git/${host}/org/app/info/refs?service=git-receive-pack%00`,
    'http://evil.example/git/x',
    `/git/${host}/org/app/snapshot.tar.zst?${'x=1&'.repeat(500)}`,
  ];
  for (let round = 0; round < 5; round++) {
    for (const target of badPaths) raw('bad path', get(target));
    raw('unknown repository', get(`/git/${host}/org/missing-${round}/info/refs?service=git-upload-pack`));
  }

  for (let i = 0; i < 20; i++) raw('huge header', get('/_liveness', 'GET', `X-Big: ${'b'.repeat(64 * 1024)}\r\n`));
  for (let i = 0; i < 20; i++) raw('many headers', get('/_liveness', 'GET', Array.from({ length: 3000 }, (_, j) => `X-H${j}: v\r\n`).join('')));
  for (let i = 0; i < 20; i++) raw('big cookie', get(`/git/${host}/org/app/snapshot.tar.zst`, 'HEAD', `Cookie: ${'c'.repeat(15 * 1024)}\r\n`));

  const methods = ['DELETE', 'PUT', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO', 'CONNECT'];
  const routes = [
    '/_liveness',
    '/metrics',
    `/git/${host}/org/app/snapshot.tar.zst`,
    `/api/v1/git/${host}/org/app/snapshots`,
    `/git/${host}/org/app/info/refs?service=git-upload-pack`,
    `/git/${host}/org/app/git-upload-pack`,
    `/git/${host}/org/app/snapshot.bundle`,
    '/',
  ];
  for (let round = 0; round < 2; round++) for (const method of methods) for (const route of routes) raw(`method ${method}`, get(route, method));

  const uploadPack = `/git/${host}/org/app/git-upload-pack`;
  const post = (target: string, body: Buffer, headers: string): string =>
    `POST ${target} HTTP/1.1\r\nHost: cachew\r\n${headers}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body.toString('latin1')}`;
  for (let i = 0; i < 50; i++) raw('garbage upload-pack', post(uploadPack, randomBytes(64 + i * 37), 'Content-Type: application/x-git-upload-pack-request\r\n'));
  for (let i = 0; i < 30; i++) {
    raw('garbage gzip', post(uploadPack, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), randomBytes(200)]), 'Content-Type: application/x-git-upload-pack-request\r\nContent-Encoding: gzip\r\n'));
  }
  for (let i = 0; i < 20; i++) raw('wrong content type', post(uploadPack, randomBytes(100), 'Content-Type: text/html\r\n'));
  for (let i = 0; i < 20; i++) raw('garbage to unknown repo api', post(`/api/v1/git/${host}/org/nope-${i}/snapshots`, randomBytes(100), ''));
  for (let i = 0; i < 20; i++) raw('garbage to info/refs', post(`/git/${host}/org/app/info/refs?service=git-upload-pack`, randomBytes(100), ''));
  for (let i = 0; i < 30; i++) raw('broken chunking', `POST ${uploadPack} HTTP/1.1\r\nHost: cachew\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-git-upload-pack-request\r\n\r\nZZZ\r\nnot hex\r\n`);
  for (let i = 0; i < 20; i++) raw('short body', `POST ${uploadPack} HTTP/1.1\r\nHost: cachew\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: 1000\r\n\r\n0032want`, 15_000);
  for (let i = 0; i < 10; i++) raw('declared huge body', get('/_liveness', 'POST', `Content-Length: ${10 * MiB}\r\n`));

  const noise = ['GARBAGE\r\n\r\n', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 'GET / HTTP/9.9\r\n\r\n', 'GET /_liveness HTTP/1.0\r\n\r\n', 'GET / HTTP/1.1\r\nNoColonHere\r\n\r\n', 'GET / HTTP/1.1\r\nHost: a\r\nX: \u0000\r\n\r\n', 'GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', '\r\n\r\n\r\n'];
  for (let round = 0; round < 5; round++) for (const data of noise) raw('protocol noise', data);

  for (let i = 0; i < 40; i++) list.push({ kind: 'slowloris', send: () => drip(url, 200, 15_000) });
  return list;
}

test('≥ 500 scripted hostile requests: no 5xx, and the server stays healthy', { timeout: 240_000 }, async () => {
  const requests = hostileRequests(upstream.hostName);
  assert.ok(requests.length >= 500, `${requests.length} requests`);
  const failures: string[] = [];
  const byStatus = new Map<string, number>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < requests.length) {
      const { kind, send } = requests[next++];
      const reply = await send();
      const key = String(reply.status ?? 'closed');
      byStatus.set(key, (byStatus.get(key) ?? 0) + 1);
      if (reply.status !== undefined && reply.status >= 500) failures.push(`${kind}: ${reply.status}`);
      if (!reply.closedByServer && reply.status === undefined) failures.push(`${kind}: no answer and not closed`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  assert.deepEqual(failures, [], `statuses seen: ${JSON.stringify(Object.fromEntries(byStatus))}`);
  assert.deepEqual(await health(), [200, 200]);
  const dir = path.join(tmp, 'after-hostile');
  await runGit(['-c', 'credential.helper=', 'clone', '-q', `${cachew.url}/git/${upstream.hostName}/org/app`, dir], {
    env: { HOME: tmp, GIT_TERMINAL_PROMPT: '0' },
    timeoutMs: 120_000,
  });
  assert.equal((await runGit(['rev-parse', 'HEAD'], { cwd: dir })).trim(), await upstream.head('org/app'));
});
