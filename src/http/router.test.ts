import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRouter, type RouterDeps } from './router.js';
import type { RepoTarget, RequestContext } from './context.js';
import { silentLogger } from '../util/logger.js';
import { CachewError, NotFoundError, BadRequestError, UnauthorizedError } from '../util/errors.js';
import type { AccessRequest } from '../git/access/gate.js';

function fakeCtx(method: string, url: string, remoteAddress: string, headers: Record<string, string> = {}): RequestContext {
  const req = { method, url, headers, socket: { remoteAddress } } as unknown as IncomingMessage;
  return { req, res: {} as ServerResponse, url: new URL(url, 'http://x'), log: silentLogger, signal: new AbortController().signal, route: 'unknown' };
}

function router(apiToken?: string, access?: RouterDeps['access']): { handler: ReturnType<typeof createRouter>; seen: Array<{ kind: string; target: RepoTarget }> } {
  const seen: Array<{ kind: string; target: RepoTarget }> = [];
  const record = (kind: string) => async (_ctx: RequestContext, target: RepoTarget) => {
    seen.push({ kind, target });
  };
  const noop = async () => {};
  const deps: RouterDeps = {
    upstreams: new Map([['github.com', 'https://github.com'], ['127.0.0.1:9000', 'http://127.0.0.1:9000']]),
    git: record('git'),
    snapshots: record('snapshots'),
    api: record('api'),
    liveness: noop,
    readiness: noop,
    metrics: noop,
    apiToken,
    access,
  };
  return { handler: createRouter(deps), seen };
}

test('dispatches git, snapshot and API paths with the repo spelling kept', async () => {
  const { handler, seen } = router();
  await handler(fakeCtx('GET', '/git/github.com/org/repo.git/info/refs?service=git-upload-pack', '127.0.0.1'));
  await handler(fakeCtx('GET', '/git/127.0.0.1:9000/org/repo/snapshot.tar.zst', '127.0.0.1'));
  await handler(fakeCtx('GET', '/api/v1/git/github.com/a/b/c/snapshots', '127.0.0.1'));
  assert.deepEqual(seen.map((s) => [s.kind, s.target.host, s.target.repo, s.target.canonicalRepo, s.target.action]), [
    ['git', 'github.com', 'org/repo.git', 'org/repo', 'info/refs'],
    ['snapshots', '127.0.0.1:9000', 'org/repo', 'org/repo', 'snapshot.tar.zst'],
    ['api', 'github.com', 'a/b/c', 'a/b/c', 'snapshots'],
  ]);
  assert.equal(seen[0].target.upstreamBaseUrl, 'https://github.com');
  assert.deepEqual(seen.map((s) => s.target.route.kind), ['git.info-refs', 'snapshot.stable', 'api.snapshots']);
});

test('an unknown host is 404 and reaches no handler; bad paths are 400', async () => {
  const { handler, seen } = router();
  await assert.rejects(handler(fakeCtx('GET', '/git/evil.example/org/repo/info/refs', '127.0.0.1')), NotFoundError);
  await assert.rejects(handler(fakeCtx('GET', '/git/github.com/org/%2e%2e/info/refs', '127.0.0.1')), BadRequestError);
  await assert.rejects(handler(fakeCtx('GET', '/nope', '127.0.0.1')), NotFoundError);
  assert.equal(seen.length, 0);
});

test('POST /api/v1 needs loopback or the bearer token', async () => {
  const post = (token: string | undefined, address: string, auth?: string) =>
    router(token).handler(fakeCtx('POST', '/api/v1/git/github.com/org/repo/snapshots', address, auth ? { authorization: auth } : {}));
  await post(undefined, '127.0.0.1');
  await post(undefined, '::1');
  const code = (err: unknown) => (err as CachewError).code;
  await assert.rejects(post(undefined, '10.1.2.3'), (err) => code(err) === 'forbidden');
  await assert.rejects(post('s3cret', '10.1.2.3'), (err) => code(err) === 'unauthorized');
  await assert.rejects(post('s3cret', '10.1.2.3', 'Bearer wrong'), (err) => code(err) === 'unauthorized');
  await post('s3cret', '10.1.2.3', 'Bearer s3cret');
  // GET (the list) is not restricted.
  await router('s3cret').handler(fakeCtx('GET', '/api/v1/git/github.com/org/repo/snapshots', '10.1.2.3'));
});

test('the access gate runs before every repository handler, with the caller header; the API token never reaches it', async () => {
  const asked: AccessRequest[] = [];
  const access = {
    async authorize(request: AccessRequest) {
      asked.push(request);
      if (request.authorization !== 'Basic ok') throw new UnauthorizedError('authentication required', 'Basic realm="x"');
    },
  };
  const { handler, seen } = router('op-token', access);
  const paths = [
    '/git/github.com/org/repo.git/info/refs?service=git-upload-pack',
    '/git/github.com/org/repo/git-upload-pack',
    '/git/github.com/org/repo/git-receive-pack',
    '/git/github.com/org/repo.git/info/lfs/objects/batch',
    '/git/github.com/org/repo/snapshot.tar.zst',
    `/git/github.com/org/repo/snapshot/${'a'.repeat(40)}.tar.zst`,
    `/git/github.com/org/repo/snapshot.bundle?base=${'a'.repeat(40)}`,
    '/api/v1/git/github.com/org/repo/snapshots',
  ];
  for (const path of paths) {
    await assert.rejects(handler(fakeCtx('GET', path, '127.0.0.1', { authorization: 'Basic nope' })), UnauthorizedError, path);
  }
  assert.equal(seen.length, 0, 'no handler ran for a refused caller');
  assert.equal(asked.length, paths.length);
  assert.ok(asked.every((a) => a.host === 'github.com' && a.canonicalRepo === 'org/repo' && a.authorization === 'Basic nope'));
  for (const path of paths) await handler(fakeCtx('GET', path, '127.0.0.1', { authorization: 'Basic ok' }));
  assert.equal(seen.length, paths.length);

  asked.length = 0;
  await handler(fakeCtx('POST', '/api/v1/git/github.com/org/repo/snapshots', '10.0.0.1', { authorization: 'Bearer op-token' }));
  assert.equal(asked.length, 0, 'the operator token on the API is ours: not checked upstream');
  await assert.rejects(handler(fakeCtx('GET', '/git/github.com/org/repo/snapshot.tar.zst', '10.0.0.1', { authorization: 'Bearer op-token' })), UnauthorizedError);
  assert.equal(asked[0].authorization, undefined, 'elsewhere it counts as no credential and is not sent upstream');
  await handler(fakeCtx('GET', '/_liveness', '10.0.0.1'));
  assert.equal(asked.length, 1, 'health routes are not gated');
});
