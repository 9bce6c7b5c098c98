import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccessDecisionCache, decisionKey } from './decision-cache.js';
import { callerCredential } from './credentials.js';

void test('allow and deny expire after their own TTLs on the injected clock', () => {
  let now = 1_000;
  const cache = new AccessDecisionCache({ allowTtlMs: 60_000, denyTtlMs: 10_000, now: () => now });
  cache.set('a', 'allow');
  cache.set('d', 'not_found');
  cache.set('u', 'unauthorized');
  now += 9_999;
  assert.deepEqual([cache.get('a'), cache.get('d'), cache.get('u')], ['allow', 'not_found', 'unauthorized']);
  now += 1;
  assert.deepEqual([cache.get('a'), cache.get('d'), cache.get('u')], ['allow', undefined, undefined]);
  now += 50_000;
  assert.equal(cache.get('a'), undefined);
  assert.equal(cache.size, 0, 'expired entries are dropped when read');
});

void test('a TTL of 0 caches nothing; a fresh decision replaces the old one', () => {
  let now = 0;
  const cache = new AccessDecisionCache({ allowTtlMs: 1000, denyTtlMs: 0, now: () => now });
  cache.set('k', 'allow');
  cache.set('k', 'unauthorized');
  assert.equal(cache.get('k'), undefined, 'a denial with TTL 0 also removes the earlier allow');
  cache.set('k', 'allow');
  now = 999;
  assert.equal(cache.get('k'), 'allow');
});

void test('the map is bounded: the oldest entries go first', () => {
  const cache = new AccessDecisionCache({ allowTtlMs: 1000, denyTtlMs: 1000, maxEntries: 3, now: () => 0 });
  for (const key of ['1', '2', '3', '4']) cache.set(key, 'allow');
  assert.equal(cache.size, 3);
  assert.equal(cache.get('1'), undefined);
  assert.equal(cache.get('4'), 'allow');
});

void test('keys and fingerprints never hold the credential in clear', () => {
  const header = `Basic ${Buffer.from('alice:s3cret-password').toString('base64')}`;
  const credential = callerCredential(header);
  const key = decisionKey(credential.hash, 'git.example', 'org/repo');
  assert.match(credential.hash, /^[0-9a-f]{64}$/);
  assert.match(credential.fingerprint, /^[0-9a-f]{12}$/);
  for (const text of [key, credential.fingerprint]) {
    assert.ok(!text.includes(header) && !text.includes('s3cret') && !text.includes(header.slice(6)));
  }
  assert.equal(callerCredential(header).fingerprint, credential.fingerprint, 'stable within the process');
  assert.notEqual(callerCredential(`Bearer tok`).hash, credential.hash);
  for (const none of [undefined, '', '   ', 'Digest abc', 'Basic', ['Basic a', 'Basic b']]) {
    const anonymous = callerCredential(none);
    assert.equal(anonymous.authorization, undefined, `${JSON.stringify(none)} is no credential`);
    assert.equal(anonymous.hash, 'anonymous');
  }
});
