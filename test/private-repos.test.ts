/**
 * End-to-end: an upstream that requires HTTP Basic auth and serves two repositories to two users,
 * cachewd in passthrough mode for it (S3 on moto as the shared tier), stock git with a credential
 * helper, and the real `cachew git restore`. Each user gets its own repository through every route
 * and 401/404 for the other's — the immutable URL of a snapshot the other already made included; one
 * upstream check per credential and repository per TTL (the clock is injected); a revoked user is
 * refused once the TTL is over; no credential ends up in logs, the state dir, S3 or /metrics.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile, lstat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { startUpstream, type Upstream } from './harness/upstream.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { createBucket, s3ClientFor, startMoto, type MotoServer } from './harness/moto.js';
import { get, sha256 } from './harness/http.js';
import { ManualClock } from '../src/util/testing/manual-clock.js';

const execFileAsync = promisify(execFile);

const USERS = {
  alice: { password: 'alice-Pw-7Hq2xK', repos: ['team-a/app'] },
  bob: { password: 'bob-Pw-9Lm4vR', repos: ['team-b/lib'] },
};
const SERVER_TOKEN = 'srv-Tok-3Jd8pQ';
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const ALICE = basic('alice', USERS.alice.password);
const BOB = basic('bob', USERS.bob.password);
const SECRETS = [
  USERS.alice.password,
  USERS.bob.password,
  SERVER_TOKEN,
  ALICE.slice(6),
  BOB.slice(6),
  basic('x-access-token', SERVER_TOKEN).slice(6),
];
const ALLOW_TTL_MS = 60_000;
const DENY_TTL_MS = 10_000;

let upstream: Upstream;
let cachew: TestCachew;
let moto: MotoServer;
let s3: S3Client;
let tmp: string;
const clock = new ManualClock();
const logLines: string[] = [];

/** Environment of every git and client process: no user or system config, no prompts. */
const baseEnv = (): NodeJS.ProcessEnv => ({ ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0', HOME: tmp });

/** A git credential helper that answers with `user`'s password (the form users put in their config). */
const helper = (user: keyof typeof USERS): string => `!f() { echo username=${user}; echo password=${USERS[user].password}; }; f`;

/** Runs git as `user` (through its credential helper), or with no credentials at all. */
async function git(user: keyof typeof USERS | undefined, args: string[], cwd = tmp): Promise<{ code: number; stdout: string; stderr: string }> {
  const config = user ? ['-c', 'credential.helper=', '-c', `credential.helper=${helper(user)}`] : ['-c', 'credential.helper='];
  try {
    const { stdout, stderr } = await execFileAsync('git', [...config, ...args], { cwd, env: baseEnv(), timeout: 120_000 });
    return { code: 0, stdout: stdout.trim(), stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The real `cachew git restore` CLI; `user` configures git's credential helper in the environment. */
async function restoreCli(user: keyof typeof USERS | undefined, args: string[], extraEnv: Record<string, string> = {}) {
  const env: NodeJS.ProcessEnv = { ...baseEnv(), CACHEW_URL: cachew.url, ...extraEnv };
  if (user) Object.assign(env, { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'credential.helper', GIT_CONFIG_VALUE_0: helper(user) });
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['--import', 'tsx', 'src/cli/cachew.ts', 'git', 'restore', ...args], { env, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const cachewRepo = (repo: string): string => `${cachew.url}/git/${upstream.hostName}/${repo}.git`;
const route = (repo: string, rest: string): string => `${cachew.url}/git/${upstream.hostName}/${repo}/${rest}`;
const api = (repo: string): string => `${cachew.url}/api/v1/git/${upstream.hostName}/${repo}/snapshots`;
const auth = (header: string | undefined): Record<string, string> => (header ? { authorization: header } : {});
/** Requests that reached the upstream with `header`: only the gate's checks carry a caller's credential. */
const checksWith = (header: string): number => upstream.requests.filter((r) => r.authorization === header).length;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cachew-private-'));
  upstream = await startUpstream({
    users: {
      alice: { ...USERS.alice, repos: [...USERS.alice.repos] },
      bob: { ...USERS.bob, repos: [...USERS.bob.repos] },
      // The server's own account: it mirrors both repositories.
      'x-access-token': { password: SERVER_TOKEN, repos: ['team-a/app', 'team-b/lib'] },
    },
  });
  await upstream.createRepo('team-a/app', { 'README.md': '# app\n', 'src/a.txt': 'a\n'.repeat(2000) });
  await upstream.createRepo('team-b/lib', { 'README.md': '# lib\n', 'src/b.txt': 'b\n'.repeat(2000) });
  const tokenFile = join(tmp, 'server-token');
  await writeFile(tokenFile, `${SERVER_TOKEN}\n`);

  moto = await startMoto();
  await createBucket(moto, 'private');
  s3 = s3ClientFor(moto);
  process.env.AWS_ACCESS_KEY_ID = moto.credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = moto.credentials.secretAccessKey;

  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(chunk.toString('utf8'));
      callback();
    },
  });
  cachew = await startCachew(
    [upstream],
    {
      upstreams: [{ name: upstream.hostName, baseUrl: upstream.url, auth: 'passthrough', tokenFile }],
      authAllowTtlMs: ALLOW_TTL_MS,
      authDenyTtlMs: DENY_TTL_MS,
      s3: { bucket: 'private', endpoint: moto.endpoint, region: moto.region, prefix: 'cachew' },
    },
    { logger: pino({ level: 'trace' }, sink), clock },
  );
});

after(async () => {
  await cachew?.stop();
  await upstream?.stop();
  s3?.destroy();
  await moto?.stop();
  await rm(tmp, { recursive: true, force: true });
});

test('each user clones and fetches its own repository with stock git; the other one is refused', { timeout: 180_000 }, async () => {
  const a = await git('alice', ['clone', '-q', cachewRepo('team-a/app'), join(tmp, 'alice-app')]);
  assert.equal(a.code, 0, a.stderr);
  const b = await git('bob', ['clone', '-q', cachewRepo('team-b/lib'), join(tmp, 'bob-lib')]);
  assert.equal(b.code, 0, b.stderr);

  const cross = await git('bob', ['clone', '-q', cachewRepo('team-a/app'), join(tmp, 'bob-app')]);
  assert.notEqual(cross.code, 0);
  assert.match(cross.stderr, /not found|404/i);
  const cross2 = await git('alice', ['clone', '-q', cachewRepo('team-b/lib'), join(tmp, 'alice-lib')]);
  assert.notEqual(cross2.code, 0);
  const anonymous = await git(undefined, ['clone', '-q', cachewRepo('team-a/app'), join(tmp, 'anon-app')]);
  assert.notEqual(anonymous.code, 0);
  assert.match(anonymous.stderr, /could not read Username|Authentication failed/i, 'git was asked for credentials');
  await assert.rejects(lstat(join(tmp, 'bob-app')));

  const next = await upstream.commit('team-a/app', { 'src/new.txt': 'new\n' });
  await clock.advance(1000); // past the ref-check interval: the mirror asks upstream again
  const fetched = await git('alice', ['fetch', '-q', 'origin'], join(tmp, 'alice-app'));
  assert.equal(fetched.code, 0, fetched.stderr);
  assert.equal((await git('alice', ['rev-parse', 'origin/main'], join(tmp, 'alice-app'))).stdout, next);
  const bobFetch = await git('bob', ['fetch', '-q', cachewRepo('team-a/app')], join(tmp, 'bob-lib'));
  assert.notEqual(bobFetch.code, 0, 'a fetch of the other repository into an own clone is refused too');
});

test('snapshots, bundles and the API: 401/404 for the other user, the immutable URL included', { timeout: 180_000 }, async () => {
  const created = await fetch(api('team-a/app'), { method: 'POST', headers: auth(ALICE) });
  assert.equal(created.status, 200, await created.clone().text());
  const snapshot = (await created.json()) as { commit: string; digest: string; url: string };
  const immutable = `${cachew.url}${snapshot.url}`;

  const mine = await get(immutable, auth(ALICE));
  assert.equal(mine.status, 200);
  assert.equal(sha256(mine.body), snapshot.digest);
  const range = await get(immutable, { ...auth(ALICE), range: 'bytes=0-99' });
  assert.equal(range.status, 206);
  assert.equal((await get(route('team-a/app', 'snapshot.tar.zst'), auth(ALICE), 'HEAD')).status, 200);
  const bundle = await get(route('team-a/app', `snapshot.bundle?base=${snapshot.commit}`), auth(ALICE));
  assert.ok(bundle.status === 200 || bundle.status === 204, `bundle: ${bundle.status}`);
  assert.equal((await get(api('team-a/app'), auth(ALICE))).status, 200);

  const refused: Array<[string, string, string]> = [
    ['GET', immutable, ''],
    ['HEAD', immutable, ''],
    ['GET', route('team-a/app', 'snapshot.tar.zst'), ''],
    ['GET', route('team-a/app', `snapshot.bundle?base=${snapshot.commit}`), ''],
    ['GET', api('team-a/app'), ''],
    ['POST', api('team-a/app'), ''],
    ['GET', route('team-a/app.git', 'info/refs?service=git-upload-pack'), ''],
  ];
  for (const [method, url] of refused) {
    const other = await fetch(url, { method, headers: { ...auth(BOB), range: 'bytes=0-99' } });
    await other.body?.cancel();
    assert.equal(other.status, 404, `bob: ${method} ${url}`);
    const anonymous = await fetch(url, { method });
    await anonymous.body?.cancel();
    assert.equal(anonymous.status, 401, `anonymous: ${method} ${url}`);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic realm=/);
    const wrong = await fetch(url, { method, headers: auth(basic('alice', 'not-her-password')) });
    await wrong.body?.cancel();
    assert.equal(wrong.status, 401, `wrong password: ${method} ${url}`);
  }
  // The other repository's path cannot be used to reach this one's snapshot either.
  assert.equal((await get(route('team-b/lib', `snapshot/${snapshot.commit}.tar.zst`), auth(BOB))).status, 404);
});

test('cachew git restore: the credential helper or --token, 401 as one line', { timeout: 180_000 }, async () => {
  const ok = await restoreCli('alice', [`${upstream.url}/team-a/app.git`, join(tmp, 'restore-alice'), '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const head = await upstream.head('team-a/app');
  assert.equal((JSON.parse(ok.stdout) as { commit: string }).commit, head);

  const viaToken = await restoreCli(undefined, [`${upstream.url}/team-b/lib.git`, join(tmp, 'restore-bob'), '--token', `bob:${USERS.bob.password}`]);
  assert.equal(viaToken.code, 0, viaToken.stderr);

  const other = await restoreCli('bob', [`${upstream.url}/team-a/app.git`, join(tmp, 'restore-bob-app')]);
  assert.equal(other.code, 2, 'the other repository looks like one without a snapshot (404)');
  const none = await restoreCli(undefined, [`${upstream.url}/team-a/app.git`, join(tmp, 'restore-anon')]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /^cachew: http:\/\/127\.0\.0\.1:\d+ requires credentials for .*team-a\/app\.git \(HTTP 401\)/);
  assert.equal(none.stderr.trim().split('\n').length, 1, none.stderr);
  const badToken = await restoreCli(undefined, [`${upstream.url}/team-a/app.git`, join(tmp, 'restore-bad')], { CACHEW_TOKEN: 'alice:wrong' });
  assert.equal(badToken.code, 1);
  assert.match(badToken.stderr, /^cachew: .* refused our credentials for .*\(HTTP 401\)/);
  for (const dir of ['restore-bob-app', 'restore-anon', 'restore-bad']) await assert.rejects(lstat(join(tmp, dir)));
});

test('one upstream check per credential and repository per TTL; a revoked user is refused after it', { timeout: 120_000 }, async () => {
  await clock.advance(ALLOW_TTL_MS); // every earlier decision has expired
  const before = checksWith(ALICE);
  for (const [url, method] of [
    [route('team-a/app.git', 'info/refs?service=git-upload-pack'), 'GET'],
    [route('team-a/app', 'snapshot.tar.zst'), 'HEAD'],
    [api('team-a/app'), 'GET'],
  ] as const) {
    assert.equal((await get(url, auth(ALICE), method)).status, 200, url);
  }
  assert.equal(checksWith(ALICE) - before, 1, 'three requests, one upstream check');

  const bobBefore = checksWith(BOB);
  assert.equal((await get(api('team-a/app'), auth(BOB))).status, 404);
  await clock.advance(DENY_TTL_MS - 1);
  assert.equal((await get(api('team-a/app'), auth(BOB))).status, 404);
  assert.equal(checksWith(BOB) - bobBefore, 1, 'a denial is cached too');
  await clock.advance(1);
  assert.equal((await get(api('team-a/app'), auth(BOB))).status, 404);
  assert.equal(checksWith(BOB) - bobBefore, 2, 'and expires after the shorter deny TTL');

  delete upstream.users!.alice; // revoked upstream
  assert.equal((await get(api('team-a/app'), auth(ALICE))).status, 200, 'still inside the allow TTL');
  await clock.advance(ALLOW_TTL_MS);
  const refused = await get(api('team-a/app'), auth(ALICE));
  assert.equal(refused.status, 401, 'revocation is seen once the TTL is over');
  const clone = await git('alice', ['clone', '-q', cachewRepo('team-a/app'), join(tmp, 'alice-revoked')]);
  assert.notEqual(clone.code, 0);
});

test('no credential in logs, the state dir, S3 or /metrics; logs carry fingerprints', { timeout: 120_000 }, async () => {
  const metrics = (await get(`${cachew.url}/metrics`)).body.toString('utf8');
  assert.match(metrics, /cachew_auth_checks_total\{host="[^"]+",outcome="allow"\} \d+/);
  assert.match(metrics, /cachew_auth_cache_hits_total\{host="[^"]+",decision="allow"\} \d+/);
  assert.match(metrics, /cachew_auth_denials_total\{host="[^"]+",status="404"\} \d+/);

  const haystacks: Array<[string, Buffer]> = [
    ['metrics', Buffer.from(metrics)],
    ['logs', Buffer.from(logLines.join(''))],
  ];
  for (const file of await filesUnder(cachew.stateDir)) haystacks.push([file, await readFile(file)]);
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: 'private', ContinuationToken: token }));
    for (const object of page.Contents ?? []) keys.push(object.Key ?? '');
    token = page.NextContinuationToken;
  } while (token);
  assert.ok(keys.length > 0, 'the snapshot reached S3');
  haystacks.push(['s3 keys', Buffer.from(keys.join('\n'))]);
  for (const key of keys) {
    const object = await s3.send(new GetObjectCommand({ Bucket: 'private', Key: key }));
    haystacks.push([`s3:${key}`, Buffer.from(await object.Body!.transformToByteArray())]);
  }
  for (const [where, data] of haystacks) {
    for (const secret of SECRETS) assert.equal(data.indexOf(secret), -1, `${secret} found in ${where}`);
  }
  assert.ok(logLines.some((line) => /"credential":"[0-9a-f]{12}"/.test(line) && line.includes('access denied')), 'denials are logged with a fingerprint');
});

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await filesUnder(path)));
    else if (entry.isFile()) out.push(path);
  }
  return out;
}
