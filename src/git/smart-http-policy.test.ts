import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError, CachewError, GitCommandError } from '../util/errors.js';
import { silentLogger } from '../util/logger.js';
import { mirrorHasWants, planGitRequest, refusedUploadPack, uploadPackForwardHeaders } from './smart-http-policy.js';

void test('planGitRequest: mirror for clone and fetch, upstream for pushes and the rest', () => {
  const plan = (action: string, method: string, service: string | null = null, readOnly = false): unknown =>
    planGitRequest({ action, method, service, readOnly });
  assert.deepEqual(plan('info/refs', 'GET', 'git-upload-pack'), { kind: 'advertise' });
  assert.deepEqual(plan('info/refs', 'HEAD', 'git-upload-pack'), { kind: 'advertise' });
  assert.deepEqual(plan('git-upload-pack', 'POST'), { kind: 'upload-pack' });
  assert.deepEqual(plan('info/refs', 'GET', 'git-receive-pack'), { kind: 'forward', push: true });
  assert.deepEqual(plan('git-receive-pack', 'POST'), { kind: 'forward', push: true });
  assert.deepEqual(plan('info/lfs/objects/batch', 'POST'), { kind: 'forward', push: false });
  assert.deepEqual(plan('info/refs', 'GET'), { kind: 'forward', push: false }, 'dumb HTTP goes upstream');
  assert.throws(() => plan('info/refs', 'POST', 'git-upload-pack'), BadRequestError);
  assert.throws(() => plan('git-upload-pack', 'GET'), BadRequestError);
  for (const [action, service] of [['git-receive-pack', null], ['info/refs', 'git-receive-pack']] as const) {
    assert.throws(() => plan(action, 'POST', service, true), (err: unknown) => err instanceof CachewError && err.code === 'forbidden');
  }
  assert.deepEqual(plan('git-upload-pack', 'POST', null, true), { kind: 'upload-pack' }, 'read-only still serves clones');
});

/** A mirror that holds `held` and gains `fetched` on fetchNow. */
function fakeMirror(held: string[], fetched: string[] = [], fetchFails = false) {
  const objects = new Set(held);
  const calls = { fetches: 0 };
  return {
    calls,
    missingObjects: (shas: readonly string[]) => Promise.resolve(shas.filter((s) => !objects.has(s))),
    fetchNow: () => {
      calls.fetches++;
      if (fetchFails) return Promise.reject(new Error('upstream down'));
      for (const s of fetched) objects.add(s);
      return Promise.resolve();
    },
  };
}

void test('mirrorHasWants: serve what is held, fetch once for what is not, forward what upstream lacks too', async () => {
  const [a, b] = ['a'.repeat(40), 'b'.repeat(40)];
  const options = { log: silentLogger };
  const held = fakeMirror([a, b]);
  assert.equal(await mirrorHasWants(held, [a, b], options), true);
  assert.equal(held.calls.fetches, 0, 'no fetch when everything is held');

  const behind = fakeMirror([a], [b]);
  assert.equal(await mirrorHasWants(behind, [a, b], options), true);
  assert.equal(behind.calls.fetches, 1, 'one fetch brings the missing want');

  const lacking = fakeMirror([a]);
  assert.equal(await mirrorHasWants(lacking, [a, b], options), false, 'still missing: forward');
  assert.equal(lacking.calls.fetches, 1);

  const down = fakeMirror([a], [b], true);
  assert.equal(await mirrorHasWants(down, [b], options), false, 'a failed fetch forwards instead of failing');
});

void test('refusedUploadPack: the client’s faults are 400 without paths; ours are not', () => {
  const clientFault = new GitCommandError(['upload-pack'], 128, 'fatal: protocol error: bad line length 9 in /srv/state/mirrors/x.git');
  const refused = refusedUploadPack(clientFault);
  assert.ok(refused instanceof BadRequestError);
  assert.equal(refused.message, 'malformed upload-pack request: protocol error: bad line length 9 in …');
  assert.equal(refusedUploadPack(new GitCommandError(['upload-pack'], 128, 'fatal: packfile is corrupt')), undefined);
  assert.equal(refusedUploadPack(new Error('protocol error')), undefined);
});

void test('uploadPackForwardHeaders: the protocol’s headers and the caller’s credential, nothing else', () => {
  const headers = uploadPackForwardHeaders({
    'git-protocol': 'version=2:evil stuff',
    'user-agent': 'git/2.45',
    authorization: 'Basic dTpw',
    cookie: 'session=1',
    host: 'cachew.example',
  });
  assert.deepEqual(headers, {
    'content-type': 'application/x-git-upload-pack-request',
    accept: 'application/x-git-upload-pack-result',
    'git-protocol': 'version=2',
    'user-agent': 'git/2.45',
    authorization: 'Basic dTpw',
  });
});
