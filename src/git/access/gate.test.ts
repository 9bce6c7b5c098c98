import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessGate, CHALLENGE, type AccessRequest } from './gate.js';
import type { AccessDecision } from './decision-cache.js';
import { UpstreamRegistry } from '../upstreams.js';
import { NotFoundError, UnauthorizedError, UpstreamError } from '../../util/errors.js';
import { silentLogger } from '../../util/logger.js';
import { Metrics } from '../../util/metrics.js';

const ALICE = `Basic ${Buffer.from('alice:pw-a').toString('base64')}`;
const BOB = `Basic ${Buffer.from('bob:pw-b').toString('base64')}`;

/** A gate whose upstream answers from `table` (repo URL → credential → decision) and counts calls. */
function scriptedGate(table: Record<string, Record<string, AccessDecision>>, passthrough = ['git.example']) {
  let now = 0;
  const calls: Array<{ url: string; authorization: string | undefined }> = [];
  const metrics = new Metrics();
  const gate = new AccessGate({
    upstreams: new UpstreamRegistry([
      { name: 'git.example', baseUrl: 'https://git.example' },
      { name: 'open.example', baseUrl: 'https://open.example' },
    ]),
    passthrough: new Set(passthrough),
    allowTtlMs: 60_000,
    denyTtlMs: 10_000,
    clock: { now: () => now },
    logger: silentLogger,
    metrics,
    probe: async (url, authorization) => {
      calls.push({ url, authorization });
      await Promise.resolve();
      const decision = table[url]?.[authorization ?? 'anonymous'];
      if (decision === undefined) throw new UpstreamError('scripted upstream has no answer');
      return decision;
    },
  });
  return { gate, calls, metrics, advance: (ms: number) => (now += ms) };
}

const req = (repo: string, authorization?: string, host = 'git.example'): AccessRequest => ({
  host,
  repo,
  canonicalRepo: repo.replace(/\.git$/, ''),
  authorization,
});

void test('public upstreams are never checked', async () => {
  const { gate, calls } = scriptedGate({}, []);
  await gate.authorize(req('org/a'));
  await gate.authorize(req('org/a', ALICE, 'open.example'));
  assert.equal(calls.length, 0);
  assert.equal(gate.isGated('git.example'), false);
});

void test('allow is cached per credential and repository for the allow TTL', async () => {
  const { gate, calls, advance, metrics } = scriptedGate({
    'https://git.example/org/a': { [ALICE]: 'allow' },
    'https://git.example/org/a.git': { [ALICE]: 'allow' },
  });
  await gate.authorize(req('org/a', ALICE));
  await gate.authorize(req('org/a.git', ALICE));
  advance(59_999);
  await gate.authorize(req('org/a', ALICE));
  assert.equal(calls.length, 1, 'one upstream check within the TTL, `.git` spelling included');
  assert.deepEqual(calls[0], { url: 'https://git.example/org/a', authorization: ALICE });
  advance(1);
  await gate.authorize(req('org/a', ALICE));
  assert.equal(calls.length, 2, 'checked again once the TTL is over');
  const text = await metrics.registry.metrics();
  assert.match(text, /cachew_auth_checks_total\{host="git.example",outcome="allow"\} 2/);
  assert.match(text, /cachew_auth_cache_hits_total\{host="git.example",decision="allow"\} 2/);
});

void test('statuses: 401 asks for credentials, a refused credential is 404, no credential is always 401', async () => {
  const { gate, metrics } = scriptedGate({
    'https://git.example/org/a': { [ALICE]: 'allow', [BOB]: 'not_found', anonymous: 'not_found' },
    'https://git.example/org/b': { [ALICE]: 'unauthorized', anonymous: 'unauthorized' },
  });
  await assert.rejects(gate.authorize(req('org/a', BOB)), NotFoundError);
  await assert.rejects(gate.authorize(req('org/b', ALICE)), (err: unknown) => err instanceof UnauthorizedError && err.challenge === CHALLENGE);
  for (const repo of ['org/a', 'org/b']) {
    await assert.rejects(gate.authorize(req(repo)), UnauthorizedError, `anonymous on ${repo}: 401 either way`);
  }
  const text = await metrics.registry.metrics();
  assert.match(text, /cachew_auth_denials_total\{host="git.example",status="401"\} 3/);
  assert.match(text, /cachew_auth_denials_total\{host="git.example",status="404"\} 1/);
});

void test('anonymous access is allowed where the upstream allows it, and cached like a credential', async () => {
  const { gate, calls } = scriptedGate({ 'https://git.example/org/open': { anonymous: 'allow' } });
  await gate.authorize(req('org/open'));
  await gate.authorize(req('org/open', 'Negotiate xyz'));
  assert.equal(calls.length, 1, 'an unknown scheme counts as anonymous and shares the decision');
  assert.equal(calls[0].authorization, undefined);
});

void test('a denial is cached for the shorter deny TTL; a revoked credential is refused after the allow TTL', async () => {
  const table: Record<string, Record<string, AccessDecision>> = { 'https://git.example/org/a': { [ALICE]: 'allow', [BOB]: 'unauthorized' } };
  const { gate, calls, advance } = scriptedGate(table);
  await gate.authorize(req('org/a', ALICE));
  await assert.rejects(gate.authorize(req('org/a', BOB)), UnauthorizedError);
  table['https://git.example/org/a'] = { [ALICE]: 'unauthorized', [BOB]: 'allow' };
  advance(9_999);
  await gate.authorize(req('org/a', ALICE));
  await assert.rejects(gate.authorize(req('org/a', BOB)), UnauthorizedError);
  assert.equal(calls.length, 2);
  advance(1);
  await gate.authorize(req('org/a', BOB));
  assert.equal(calls.length, 3, 'the denial expired after 10 s');
  advance(50_000);
  await assert.rejects(gate.authorize(req('org/a', ALICE)), UnauthorizedError, 'revocation seen after 60 s');
});

void test('concurrent requests share one check; upstream failures are not cached', async () => {
  const table: Record<string, Record<string, AccessDecision>> = {};
  const { gate, calls } = scriptedGate(table);
  const burst = Array.from({ length: 20 }, () => gate.authorize(req('org/a', ALICE)));
  const results = await Promise.allSettled(burst);
  assert.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof UpstreamError));
  assert.equal(calls.length, 1, 'twenty concurrent requests, one upstream check');
  table['https://git.example/org/a'] = { [ALICE]: 'allow' };
  await gate.authorize(req('org/a', ALICE));
  assert.equal(calls.length, 2, 'the failure was not remembered');
});
