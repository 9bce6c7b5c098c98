import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { decisionForStatus, probeUpstream } from './upstream-check.js';
import { UpstreamError } from '../../util/errors.js';

const ADVERTISEMENT = 'application/x-git-upload-pack-advertisement';

/** A loopback server answering with `reply`; records the requests it saw. */
async function serve(reply: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const seen: Array<{ url: string; headers: http.IncomingHttpHeaders }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    reply(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = async (): Promise<void> => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { url, seen, close };
}

void test('status mapping: only a git advertisement is an allow', () => {
  assert.equal(decisionForStatus(200, `${ADVERTISEMENT}; charset=x`), 'allow');
  assert.equal(decisionForStatus(200, 'text/html'), 'not_found', 'a login page is not access');
  assert.equal(decisionForStatus(401, undefined), 'unauthorized');
  for (const status of [301, 302, 307, 400, 403, 404, 410]) assert.equal(decisionForStatus(status, undefined), 'not_found', String(status));
  for (const status of [429, 500, 502, 503]) assert.throws(() => decisionForStatus(status, undefined), UpstreamError);
});

void test('the check sends the caller header to the repository URL and reads no body', async (t) => {
  let bodyBytesWritten = 0;
  const upstream = await serve((_req, res) => {
    res.writeHead(200, { 'content-type': ADVERTISEMENT });
    // A body far larger than a socket buffer: the probe must resolve without waiting for it.
    const chunk = Buffer.alloc(64 * 1024);
    const pump = (): void => {
      while (bodyBytesWritten < 64 * 1024 * 1024) {
        bodyBytesWritten += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  t.after(upstream.close);
  const decision = await probeUpstream(`${upstream.url}/org/repo.git`, 'Basic YTpi');
  assert.equal(decision, 'allow');
  assert.equal(upstream.seen.length, 1);
  assert.equal(upstream.seen[0].url, '/org/repo.git/info/refs?service=git-upload-pack');
  assert.equal(upstream.seen[0].headers.authorization, 'Basic YTpi');
  assert.equal(upstream.seen[0].headers['git-protocol'], 'version=2');
  assert.ok(bodyBytesWritten < 64 * 1024 * 1024, 'the body was not drained');
});

void test('anonymous checks send no Authorization; redirects are not followed', async (t) => {
  const elsewhere = await serve((_req, res) => res.writeHead(200, { 'content-type': ADVERTISEMENT }).end());
  t.after(elsewhere.close);
  const upstream = await serve((_req, res) => res.writeHead(302, { location: `${elsewhere.url}/stolen` }).end());
  t.after(upstream.close);
  assert.equal(await probeUpstream(`${upstream.url}/org/repo`, undefined), 'not_found');
  assert.equal(upstream.seen[0].headers.authorization, undefined);
  assert.equal(elsewhere.seen.length, 0, 'the redirect target was never contacted');
});

void test('unreachable and silent upstreams are UpstreamErrors', async (t) => {
  const silent = await serve(() => {
    // never answers
  });
  t.after(silent.close);
  await assert.rejects(probeUpstream(`${silent.url}/r`, undefined, { timeoutMs: 100 }), /timed out/);
  const gone = await serve(() => {});
  await gone.close();
  await assert.rejects(probeUpstream(`${gone.url}/r`, undefined), UpstreamError);
});
