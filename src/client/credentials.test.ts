import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpClient, discard } from './http.js';
import { tokenAuthorization } from './credentials.js';
import { AuthenticationError } from './errors.js';

/** A loopback server that answers 401 unless the request carries `accept` as its Authorization. */
async function server(accept?: string) {
  const seen: Array<string | undefined> = [];
  const srv = http.createServer((req, res) => {
    seen.push(req.headers.authorization);
    const ok = accept === undefined || req.headers.authorization === accept;
    res.writeHead(ok ? 200 : 401, ok ? {} : { 'www-authenticate': 'Basic realm="cachew"' }).end('x');
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  const close = async (): Promise<void> => {
    srv.closeAllConnections();
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  };
  return { url, seen, close };
}

void test('a token is Basic with the token as the password, or USER:TOKEN', () => {
  assert.equal(tokenAuthorization('abc'), `Basic ${Buffer.from('x-access-token:abc').toString('base64')}`);
  assert.equal(tokenAuthorization('me:abc'), `Basic ${Buffer.from('me:abc').toString('base64')}`);
});

void test('credentials are filled once on the first 401 and sent to the server origin only', async (t) => {
  const good = tokenAuthorization('me:right');
  const cachew = await server(good);
  const elsewhere = await server();
  t.after(cachew.close);
  t.after(elsewhere.close);
  let fills = 0;
  const client = new HttpClient({
    credentials: { origin: cachew.url, repoUrl: 'https://git.example/r', fill: async () => (fills++, good) },
  });
  t.after(() => client.close());

  const first = await client.get(new URL(`${cachew.url}/a`));
  assert.equal(first.status, 200);
  discard(first);
  const more = await Promise.all([1, 2, 3].map((i) => client.get(new URL(`${cachew.url}/b${i}`))));
  more.forEach(discard);
  assert.equal(fills, 1);
  assert.deepEqual(cachew.seen, [undefined, good, good, good, good], 'asked without, then with, then always with');
  const redirected = await client.get(new URL(`${elsewhere.url}/presigned`));
  discard(redirected);
  assert.deepEqual(elsewhere.seen, [undefined], 'another origin never gets the credential');
});

void test('a final 401 is an AuthenticationError naming the repository, without retries', async (t) => {
  const cachew = await server(tokenAuthorization('me:right'));
  t.after(cachew.close);
  const wrong = new HttpClient({ credentials: { origin: cachew.url, repoUrl: 'https://git.example/r', authorization: tokenAuthorization('me:wrong') } });
  t.after(() => wrong.close());
  await assert.rejects(wrong.get(new URL(`${cachew.url}/a`)), (err: unknown) => err instanceof AuthenticationError && /refused our credentials for https:\/\/git\.example\/r/.test(err.message));
  const none = new HttpClient({ credentials: { origin: cachew.url, repoUrl: 'https://git.example/r', fill: async () => undefined } });
  t.after(() => none.close());
  await assert.rejects(none.get(new URL(`${cachew.url}/a`)), /requires credentials for https:\/\/git\.example\/r/);
  assert.equal(cachew.seen.length, 2, 'one request each: nothing to retry with');
});
