import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRouter, type RouterDeps } from './router.js';
import type { RepoTarget, RequestContext } from './context.js';
import { silentLogger } from '../util/logger.js';
import { CachewError, NotFoundError, BadRequestError } from '../util/errors.js';

function fakeCtx(method: string, url: string, remoteAddress: string, headers: Record<string, string> = {}): RequestContext {
  const req = { method, url, headers, socket: { remoteAddress } } as unknown as IncomingMessage;
  return { req, res: {} as ServerResponse, url: new URL(url, 'http://x'), log: silentLogger, signal: new AbortController().signal, route: 'unknown' };
}

function router(apiToken?: string): { handler: ReturnType<typeof createRouter>; seen: Array<{ kind: string; target: RepoTarget }> } {
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
