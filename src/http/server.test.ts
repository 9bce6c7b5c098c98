import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createHash } from 'node:crypto';
import { createHttpServer } from './server.js';
import { Metrics } from '../util/metrics.js';
import { silentLogger } from '../util/logger.js';
import type { Handler } from './context.js';

const CHUNK = Buffer.alloc(64 * 1024, 7);
const CHUNKS = 40; // 2.5 MiB, sent slowly

/** A promise and the function that resolves it: a handler signals that it is running. */
function signal(): { promise: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const promise = new Promise<void>((resolve) => (fire = resolve));
  return { promise, fire };
}

test('graceful close lets an in-flight download finish and refuses new connections', async () => {
  const started = signal();
  const slow: Handler = async (ctx) => {
    started.fire();
    ctx.res.writeHead(200, { 'content-length': CHUNK.length * CHUNKS });
    for (let i = 0; i < CHUNKS; i++) {
      if (ctx.signal.aborted) return;
      ctx.res.write(CHUNK);
      await new Promise((r) => setTimeout(r, 10));
    }
    ctx.res.end();
  };
  const server = createHttpServer(slow, { logger: silentLogger, metrics: new Metrics() });
  await server.listen('127.0.0.1', 0);
  const url = server.url();
  const body = new Promise<{ bytes: number; digest: string }>((resolve, reject) => {
    request(url, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
      });
      res.on('end', () => resolve({ bytes, digest: hash.digest('hex') }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
  await started.promise;
  assert.equal(server.inFlight(), 1);
  const closed = server.close(10_000);
  const got = await body;
  await closed;
  const expected = createHash('sha256');
  for (let i = 0; i < CHUNKS; i++) expected.update(CHUNK);
  assert.equal(got.bytes, CHUNK.length * CHUNKS);
  assert.equal(got.digest, expected.digest('hex'));
  await assert.rejects(fetch(url), 'a new connection after close is refused');
});

test('graceful close cuts requests that outlive the grace period', async () => {
  let aborted = false;
  const started = signal();
  const stuck: Handler = async (ctx) => {
    started.fire();
    ctx.res.writeHead(200);
    ctx.res.write('x');
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    aborted = true;
    ctx.res.destroy();
  };
  const server = createHttpServer(stuck, { logger: silentLogger, metrics: new Metrics() });
  await server.listen('127.0.0.1', 0);
  const response = fetch(server.url()).then((r) => r.text()).catch(() => 'cut');
  await started.promise;
  const closing = Date.now();
  await server.close(200);
  assert.ok(Date.now() - closing < 5000);
  assert.equal(await response, 'cut');
  assert.equal(aborted, true);
});
