import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SecondaryError, UnsafeArchiveError } from './errors.js';
import { settleAll } from './first-failure.js';

/** A promise the test rejects by hand, so the order of failures is exactly the one under test. */
function deferred(): { promise: Promise<void>; reject: (err: unknown) => void; resolve: () => void } {
  let reject!: (err: unknown) => void;
  let resolve!: () => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, reject, resolve };
}

void it('reports the cause even when its symptoms fail first', async () => {
  const zstd = deferred();
  const extraction = deferred();
  const download = deferred();
  let stops = 0;
  const settled = settleAll([download.promise, extraction.promise, zstd.promise], () => stops++);
  zstd.reject(new SecondaryError('zstd -d stopped (SIGPIPE)'));
  await Promise.resolve();
  download.reject(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
  extraction.reject(new UnsafeArchiveError('entry name "C:" is absolute'));
  await assert.rejects(settled, UnsafeArchiveError);
  assert.equal(stops, 1, 'the others are stopped once, at the first failure');
});

void it('reports the first symptom when nothing else failed, and nothing when all succeed', async () => {
  await assert.rejects(settleAll([Promise.reject(new SecondaryError('truncated')), Promise.resolve()], () => undefined), /truncated/);
  await settleAll([Promise.resolve(), Promise.resolve()], () => assert.fail('no failure'));
});
