/**
 * Restore through a throttled link (test/harness/throttle-proxy.ts): per-connection bandwidth cap
 * and added latency, like S3 or a CDN. The restore must come out intact (digest, clean clone) with its
 * parallel ranges really spread over several connections; and the proxy itself must keep bytes in
 * order and honour its cap (a lower bound on time, which a busy machine can only make longer).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { restore } from '../src/client/restore.js';
import { git, makeGitFixture, startSnapshotServer, type GitFixture } from './harness/snapshot-server.js';
import { startThrottleProxy } from './harness/throttle-proxy.js';

let root: string;
let fixture: GitFixture;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-throttled-'));
  fixture = await makeGitFixture(path.join(root, 'fixture'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

void it('restores through a capped, delayed link with parallel ranges and the right digest', { timeout: 120_000 }, async () => {
  const server = await startSnapshotServer({ archive: fixture.archive, commit: fixture.commit, gitRoot: fixture.gitRoot });
  const proxy = await startThrottleProxy({ target: server.url, bytesPerSecond: 256 * 1024, latencyMs: 20 });
  try {
    const dir = path.join(root, 'clone');
    const result = await restore({ repoUrl: fixture.upstreamUrl, dir, serverUrl: proxy.url, chunkSize: 16 * 1024, concurrency: 4 });
    assert.equal(result.digest, server.digest);
    assert.equal(result.bytes, server.size);
    assert.equal(await git(dir, 'rev-parse', 'HEAD'), fixture.commit);
    assert.equal(await git(dir, 'status', '--porcelain'), '');
    assert.ok(server.size > 4 * 16 * 1024, `archive of ${server.size} bytes spans several windows of ranges`);
    assert.ok(proxy.maxConcurrent() >= 2, `ranges ran over ${proxy.maxConcurrent()} connections at once`);
  } finally {
    await proxy.stop();
    await server.close();
  }
});

void it('the proxy delivers every byte in order, no faster than its cap', { timeout: 60_000 }, async () => {
  const body = randomBytes(512 * 1024);
  const origin = http.createServer((_req, res) => res.end(body));
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  const rate = 1024 * 1024;
  const proxy = await startThrottleProxy({ target: `127.0.0.1:${(origin.address() as AddressInfo).port}`, bytesPerSecond: rate, latencyMs: 30 });
  try {
    const started = performance.now();
    const response = await fetch(proxy.url);
    const received = Buffer.from(await response.arrayBuffer());
    const seconds = (performance.now() - started) / 1000;
    assert.equal(createHash('sha256').update(received).digest('hex'), createHash('sha256').update(body).digest('hex'));
    assert.ok(seconds >= (0.9 * body.length) / rate, `512 KiB at 1 MiB/s took only ${seconds.toFixed(2)} s`);
    await assert.rejects(startThrottleProxy({ target: 'http://192.0.2.1:80', bytesPerSecond: rate }), /loopback only/);
  } finally {
    await proxy.stop();
    origin.closeAllConnections();
    await new Promise<void>((resolve) => origin.close(() => resolve()));
  }
});
