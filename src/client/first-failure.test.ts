import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SecondaryError, UnsafeArchiveError } from './errors.js';
import { isSymptom } from './first-failure.js';

void it('pipe breakage and our own stop notices are symptoms; real causes are not', () => {
  assert.ok(isSymptom(new SecondaryError('zstd -d stopped (SIGPIPE)')));
  assert.ok(isSymptom(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })));
  assert.ok(isSymptom(Object.assign(new Error('premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })));
  assert.ok(!isSymptom(new UnsafeArchiveError('entry name "../x" leaves the target')));
  assert.ok(!isSymptom(new Error('ECONNRESET')));
});
