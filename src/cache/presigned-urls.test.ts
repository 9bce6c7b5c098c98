import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PresignedUrls, type Presigner } from './presigned-urls.js';
import type { PresignOptions } from './s3.js';

/** Signs `key@signedAt`; `missing` keys are absent from "S3". */
function fakePresigner(missing = new Set<string>()): Presigner & { calls: Array<{ key: string } & PresignOptions> } {
  const calls: Array<{ key: string } & PresignOptions> = [];
  return {
    calls,
    async presignGet(key, options) {
      calls.push({ key, ...options });
      return missing.has(key) ? undefined : `https://s3.example/${key}?signed=${options.signedAt?.getTime()}`;
    },
  };
}

test('a URL is reused for the first half of its lifetime, then signed anew', async () => {
  let now = 1_000_000;
  const presigner = fakePresigner();
  const urls = new PresignedUrls(presigner, { ttlMs: 300_000, now: () => now });
  const first = await urls.get('blobs/a');
  assert.equal(first, 'https://s3.example/blobs/a?signed=1000000');
  assert.deepEqual(presigner.calls[0], { key: 'blobs/a', expiresInSeconds: 300, signedAt: new Date(1_000_000), signal: undefined });
  now += 149_999;
  assert.equal(await urls.get('blobs/a'), first);
  assert.equal(presigner.calls.length, 1);
  now += 1;
  assert.equal(await urls.get('blobs/a'), 'https://s3.example/blobs/a?signed=1150000');
  assert.equal(presigner.calls.length, 2);
  // A clock that went backwards never reuses a URL "signed in the future".
  now -= 10_000;
  await urls.get('blobs/a');
  assert.equal(presigner.calls.length, 3);
});

test('an object S3 lacks is asked about again every time; the memory is bounded', async () => {
  const presigner = fakePresigner(new Set(['blobs/gone']));
  const urls = new PresignedUrls(presigner, { ttlMs: 60_000, now: () => 5_000, maxEntries: 2 });
  assert.equal(await urls.get('blobs/gone'), undefined);
  assert.equal(await urls.get('blobs/gone'), undefined);
  assert.equal(presigner.calls.length, 2);
  await urls.get('blobs/1');
  await urls.get('blobs/2');
  await urls.get('blobs/3'); // evicts blobs/1, the oldest
  const before = presigner.calls.length;
  await urls.get('blobs/3');
  await urls.get('blobs/2');
  assert.equal(presigner.calls.length, before);
  await urls.get('blobs/1');
  assert.equal(presigner.calls.length, before + 1);
});
