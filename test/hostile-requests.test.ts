/**
 * ≥ 500 scripted hostile requests against a running cachew (issue 8, "Done when"): malformed and
 * traversing paths, host spellings that point at a loopback listener that is not an upstream, oversized
 * headers and bodies, bad Range and conditional headers on snapshot URLs, broken upload-pack bodies,
 * protocol noise, idle and dribbling sockets. None may get a 5xx, nothing may connect to the decoy
 * listener, and `/_liveness` must keep answering while the barrage runs (probed back to back, not on a
 * timer). Timeouts are configured short so slow sockets are cut within about a second.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { runGit } from '../src/git/command.js';
import { FLUSH_PKT, pktLine } from '../src/git/pkt-line.js';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { TIGHT_HTTP_LIMITS, startCachew, type TestCachew } from './harness/cachew.js';
import { drip, openIdle, rawRequest, type RawReply } from './harness/raw-http.js';
import { get } from './harness/http.js';

let upstream: Upstream;
let cachew: TestCachew;
let decoy: net.Server;
let decoyConnections = 0;
let tmp: string;
const MiB = 1024 * 1024;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-hostile-'));
  upstream = await startUpstream();
  await upstream.createRepo('org/app', { 'a.txt': 'a\n', 'b/c.txt': 'c\n' });
  // A loopback listener that is not an upstream: host spellings must never reach it.
  decoy = net.createServer((socket) => {
    decoyConnections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => decoy.listen(0, '127.0.0.1', resolve));
  cachew = await startCachew([upstream], {
    http: TIGHT_HTTP_LIMITS,
  });
});
after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  await new Promise<void>((resolve) => (decoy ? decoy.close(() => resolve()) : resolve()));
  await fs.rm(tmp, { recursive: true, force: true });
});

/** One scripted hostile request: a label and what to send on a fresh connection. */
type Hostile = { kind: string; send: () => Promise<RawReply> };

const request = (target: string, method = 'GET', extra = '', host = 'cachew'): string =>
  `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`;
const post = (target: string, body: Buffer, headers: string): Buffer =>
  Buffer.concat([Buffer.from(`POST ${target} HTTP/1.1\r\nHost: cachew\r\n${headers}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`, 'latin1'), body]);

/** Paths that traverse, smuggle bytes, nest too deep or are simply not routes. */
function badPaths(host: string): string[] {
  return [
    '/git/../../etc/passwd',
    '/git/%2e%2e/%2e%2e/etc/passwd',
    `/git/${host}/../../x/info/refs`,
    `/git/${host}/org/app/../../../info/refs`,
    `/git/${host}/org/app/%2e%2e/%2e%2e/info/refs`,
    `/git/${host}/org/app/..%2f..%2finfo/refs`,
    '/%00',
    `/git/${host}/org%00/app/info/refs`,
    `/git/${host}/org/app%0d%0aX-Injected:%201/info/refs`,
    `/${'a'.repeat(8000)}`,
    `/git/${host}/${'a/'.repeat(50)}info/refs`,
    `/git/${host}/${'x'.repeat(300)}/info/refs`,
    `/git/${host}/.git/info/refs`,
    `/git/${host}/org/.hidden/info/refs`,
    `/git/${host}/org/app.git/../app/info/refs`,
    `/api/v1/git/${host}/org/app/../snapshots`,
    `/git/${host}/org/app/snapshot/../../x.tar.zst`,
    `/git/${host}/org/app/snapshot/${'g'.repeat(40)}.tar.zst`,
    `/git/${host}/org/app/snapshot/${'A'.repeat(64)}.tar.zst`,
    `/git/${host}/org/app/snapshot/${'a'.repeat(41)}.tar.zst`,
    `/git/${host}/org/app/snapshot.bundle?base=xyz`,
    `/git/${host}/org/app/snapshot.bundle?base=`,
    `/git/${host}/org/app/snapshot.bundle?base=${'a'.repeat(40)}&base=${'b'.repeat(40)}`,
    '/metrics/../_liveness',
    '//git//',
    '/git/%ZZ',
    '/git/%',
    `/git/${host}/org/app/info/refs?service=git-receive-pack%00`,
    `/git/${host}/org/app/info/refs?service=${'x'.repeat(2000)}`,
    `/git/${host}/org/app/snapshot.tar.zst?${'x=1&'.repeat(500)}`,
    '*',
    '',
  ];
}

/**
 * Upstream names that are not configured, including spellings of the decoy's own address and of the
 * real upstream's port with another name: each must be a 4xx before anything is contacted.
 */
function hostSpellings(upstreamHost: string, decoyPort: number): string[] {
  const port = upstreamHost.split(':')[1];
  const names = [
    `127.0.0.1:${decoyPort}`,
    `localhost:${decoyPort}`,
    `LOCALHOST:${decoyPort}`,
    `127.1:${decoyPort}`,
    `0x7f000001:${decoyPort}`,
    `2130706433:${decoyPort}`,
    `[::1]:${decoyPort}`,
    `%5B::1%5D:${decoyPort}`,
    `127.0.0.1.:${decoyPort}`,
    `user@127.0.0.1:${decoyPort}`,
    `127.0.0.1%3A${decoyPort}`,
    `localhost:${port}`,
    `127.0.0.1.:${port}`,
    `127.0.0.1:0${port}`,
    `${upstreamHost.toUpperCase()}X`,
    'evil.example',
    `${upstreamHost}@evil.example`,
    `${upstreamHost}%2fevil`,
  ];
  const targets: string[] = [];
  for (const name of names) {
    targets.push(`/git/${name}/org/app/info/refs?service=git-upload-pack`);
    targets.push(`/git/${name}/org/app/snapshot.tar.zst`);
    targets.push(`/api/v1/git/${name}/org/app/snapshots`);
  }
  return targets;
}

/** Range and conditional headers that are malformed, absurd or contradictory. */
function badConditionals(): string[] {
  return [
    'Range: bytes=abc\r\n',
    'Range: bytes=5-1\r\n',
    'Range: bytes=-0\r\n',
    'Range: bytes=99999999999999999999999-\r\n',
    'Range: bytes=-99999999999999999999999\r\n',
    'Range: bytes=0-0,1-1,2-2,3-3\r\n',
    `Range: bytes=${Array.from({ length: 2000 }, (_, i) => `${i}-${i}`).join(',')}\r\n`,
    'Range: pages=1-2\r\n',
    'Range: bytes=\r\n',
    'Range: bytes=0-1\r\nRange: bytes=2-3\r\n',
    'If-Range: "nope"\r\nRange: bytes=0-9\r\n',
    'If-Range: W/"weak"\r\nRange: bytes=0-9\r\n',
    'If-Range: Tue, 99 Foo 1999 99:99:99 GMT\r\nRange: bytes=0-9\r\n',
    'If-Match: garbage\r\n',
    'If-Match: *\r\nRange: bytes=0-9\r\n',
    'If-None-Match: W/"x", "y", *\r\n',
    `If-None-Match: ${'"a",'.repeat(2000)}"b"\r\n`,
    'If-Modified-Since: not a date\r\n',
    'If-Modified-Since: Sat, 01 Jan 1000 00:00:00 GMT\r\n',
    'If-Unmodified-Since: Mon, 01 Jan 1601 00:00:00 GMT\r\nRange: bytes=0-9\r\n',
    'If-Unmodified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\nRange: bytes=-5\r\n',
    'If-Unmodified-Since: yesterday\r\n',
  ];
}

/** Bodies that are not upload-pack requests, or are broken ones. */
function badUploadPackBodies(): Buffer[] {
  const oid = 'f'.repeat(40);
  return [
    Buffer.from('ffff'),
    Buffer.from('0004'),
    Buffer.from('0000'),
    Buffer.from('zzzz want'),
    Buffer.from('0100short'),
    Buffer.concat([pktLine('want nothex\n'), FLUSH_PKT, pktLine('done\n')]),
    Buffer.concat([pktLine(`want ${oid}\n`), FLUSH_PKT, pktLine('done\n')]),
    Buffer.concat([pktLine(`want ${oid} side-band-64k\n`), pktLine(`have ${'z'.repeat(40)}\n`), FLUSH_PKT]),
    Buffer.concat([pktLine('command=frobnicate\n'), FLUSH_PKT]),
    Buffer.concat([pktLine('command=fetch\n'), Buffer.from('0001'), pktLine('want nothex\n'), FLUSH_PKT]),
    Buffer.concat([pktLine('command=ls-refs\n'), Buffer.from('0001'), pktLine(`ref-prefix ${'r'.repeat(60_000)}\n`), FLUSH_PKT]),
    Buffer.concat([pktLine('deepen -1\n'), FLUSH_PKT]),
    randomBytes(512),
  ];
}

function hostileRequests(upstreamHost: string, decoyPort: number, commit: string): Hostile[] {
  const url = cachew.url;
  const list: Hostile[] = [];
  const raw = (kind: string, data: string | Buffer, deadline = 10_000): void => {
    list.push({ kind, send: () => rawRequest(url, data, deadline) });
  };
  const app = `/git/${upstreamHost}/org/app`;

  for (let round = 0; round < 4; round++) {
    for (const target of badPaths(upstreamHost)) raw('bad path', request(target));
    raw('unknown repository', request(`/git/${upstreamHost}/org/missing-${round}/info/refs?service=git-upload-pack`));
  }
  for (const target of hostSpellings(upstreamHost, decoyPort)) raw('host spelling', request(target));
  // Absolute-form targets and Host headers naming other machines route by path only.
  for (const host of ['evil.example', `127.0.0.1:${decoyPort}`, '', 'a b', `${'h'.repeat(300)}`]) {
    raw('host header', request(`${app}/info/refs?service=git-upload-pack`, 'GET', '', host));
    raw('absolute-form target', request(`http://127.0.0.1:${decoyPort}${app}/snapshot.tar.zst`, 'HEAD', '', host));
  }
  raw('duplicate host', `GET /_liveness HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n`);
  raw('no host', `GET /_liveness HTTP/1.1\r\nConnection: close\r\n\r\n`);

  const snapshotUrls = [`${app}/snapshot.tar.zst`, `${app}/snapshot/${commit}.tar.zst`];
  for (const target of snapshotUrls) {
    for (const header of badConditionals()) {
      raw('bad range/conditional', request(target, 'GET', header));
      raw('bad range/conditional', request(target, 'HEAD', header));
    }
  }

  for (let i = 0; i < 10; i++) raw('huge header', request('/_liveness', 'GET', `X-Big: ${'b'.repeat(64 * 1024)}\r\n`));
  for (let i = 0; i < 10; i++) raw('many headers', request('/_liveness', 'GET', Array.from({ length: 3000 }, (_, j) => `X-H${j}: v\r\n`).join('')));
  for (let i = 0; i < 10; i++) raw('big cookie', request(`${app}/snapshot.tar.zst`, 'HEAD', `Cookie: ${'c'.repeat(15 * 1024)}\r\n`));

  const methods = ['DELETE', 'PUT', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO', 'CONNECT'];
  const routes = ['/_liveness', '/metrics', `${app}/snapshot.tar.zst`, `/api/v1/git/${upstreamHost}/org/app/snapshots`, `${app}/info/refs?service=git-upload-pack`, `${app}/git-upload-pack`, `${app}/snapshot.bundle`, '/'];
  for (const method of methods) for (const route of routes) raw(`method ${method}`, request(route, method));

  const uploadPack = `${app}/git-upload-pack`;
  const pack = 'Content-Type: application/x-git-upload-pack-request\r\n';
  for (const body of badUploadPackBodies()) {
    raw('bad upload-pack body', post(uploadPack, body, pack));
    raw('bad upload-pack body (v2)', post(uploadPack, body, `${pack}Git-Protocol: version=2\r\n`));
  }
  for (let i = 0; i < 20; i++) raw('garbage upload-pack', post(uploadPack, randomBytes(64 + i * 37), pack));
  for (let i = 0; i < 10; i++) raw('garbage gzip', post(uploadPack, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), randomBytes(200)]), `${pack}Content-Encoding: gzip\r\n`));
  raw('unknown encoding', post(uploadPack, randomBytes(100), `${pack}Content-Encoding: br\r\n`));
  raw('body over the limit', post(uploadPack, Buffer.alloc(MiB + 1, 0x30), pack), 20_000);
  for (let i = 0; i < 5; i++) raw('wrong content type', post(uploadPack, randomBytes(100), 'Content-Type: text/html\r\n'));
  for (let i = 0; i < 5; i++) raw('body to the api', post(`/api/v1/git/${upstreamHost}/org/nope-${i}/snapshots`, randomBytes(100), ''));
  raw('oversized api body', post(`/api/v1/git/${upstreamHost}/org/app/snapshots`, Buffer.alloc(128 * 1024), ''), 20_000);
  for (let i = 0; i < 5; i++) raw('body to info/refs', post(`${app}/info/refs?service=git-upload-pack`, randomBytes(100), ''));
  for (let i = 0; i < 10; i++) raw('broken chunking', `POST ${uploadPack} HTTP/1.1\r\nHost: cachew\r\nTransfer-Encoding: chunked\r\n${pack}\r\nZZZ\r\nnot hex\r\n`);
  for (let i = 0; i < 10; i++) raw('short body', `POST ${uploadPack} HTTP/1.1\r\nHost: cachew\r\n${pack}Content-Length: 1000\r\n\r\n0032want`, 15_000);
  for (let i = 0; i < 5; i++) raw('declared huge body', request('/_liveness', 'POST', `Content-Length: ${10 * MiB}\r\n`));
  raw('both lengths', `POST ${uploadPack} HTTP/1.1\r\nHost: cachew\r\n${pack}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);

  const noise = [
    'GARBAGE\r\n\r\n',
    '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03',
    'GET / HTTP/9.9\r\n\r\n',
    'GET /_liveness HTTP/1.0\r\n\r\n',
    'GET / HTTP/1.1\r\nNoColonHere\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\nX: \u0000\r\n\r\n',
    'GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n',
    'GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n',
    '\r\n\r\n\r\n',
    'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
  ];
  for (let round = 0; round < 3; round++) for (const data of noise) raw('protocol noise', data);

  for (let i = 0; i < 20; i++) list.push({ kind: 'slowloris', send: () => drip(url, 200, 15_000) });
  return list;
}

test('≥ 500 hostile requests: no 5xx, no contact with a non-upstream, /_liveness answers throughout', { timeout: 120_000 }, async (t) => {
  // A snapshot to aim ranges and conditionals at (and the mirror they would be served from).
  const stable = await get(`${cachew.url}/git/${upstream.hostName}/org/app/snapshot.tar.zst`, {}, 'HEAD');
  assert.equal(stable.status, 200);
  const commit = stable.headers.get('x-cachew-snapshot-commit')!;
  const decoyPort = (decoy.address() as net.AddressInfo).port;

  const requests = hostileRequests(upstream.hostName, decoyPort, commit);
  assert.ok(requests.length >= 500, `${requests.length} requests`);
  const failures: string[] = [];
  const byStatus = new Map<string, number>();
  // Idle sockets held through the whole barrage: the connection cap must evict them, not us.
  const idle = await openIdle(cachew.url, 300);
  let next = 0;
  let done = false;
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
  // Liveness is probed back to back for as long as the barrage runs; each probe has its own bound.
  const probes: number[] = [];
  const prober = async (): Promise<void> => {
    while (!done) {
      const res = await fetch(`${cachew.url}/_liveness`, { signal: AbortSignal.timeout(10_000) }).catch((err: Error) => err);
      if (res instanceof Error) failures.push(`/_liveness during the barrage: ${res.message}`);
      else {
        probes.push(res.status);
        await res.arrayBuffer();
      }
    }
  };
  try {
    const probing = prober();
    await Promise.all(Array.from({ length: 16 }, worker));
    done = true;
    await probing;
  } finally {
    done = true;
    for (const s of idle) s.destroy();
  }
  t.diagnostic(`${requests.length} requests; statuses ${JSON.stringify(Object.fromEntries(byStatus))}; ${probes.length} liveness probes meanwhile`);
  assert.deepEqual(failures, [], `statuses seen: ${JSON.stringify(Object.fromEntries(byStatus))}`);
  assert.ok(probes.length > 0 && probes.every((s) => s === 200), `liveness during the barrage: ${probes.length} probes, ${probes.filter((s) => s !== 200).length} not 200`);
  assert.equal(decoyConnections, 0, 'nothing reached the listener that is not an upstream');
  assert.equal((await fetch(`${cachew.url}/_readiness`)).status, 200);

  // And real git still works afterwards.
  const dir = path.join(tmp, 'after-hostile');
  await runGit(['-c', 'credential.helper=', 'clone', '-q', `${cachew.url}/git/${upstream.hostName}/org/app`, dir], {
    env: { HOME: tmp, GIT_TERMINAL_PROMPT: '0' },
    timeoutMs: 60_000,
  });
  assert.equal((await runGit(['rev-parse', 'HEAD'], { cwd: dir })).trim(), await upstream.head('org/app'));
});
