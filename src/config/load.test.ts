import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from './load.js';
import { ConfigError } from '../util/errors.js';
import { DEFAULT_CONFIG } from './types.js';

test('defaults match SPEC §2', () => {
  const { config } = loadConfig([], {});
  assert.deepEqual(config.bind, { host: '127.0.0.1', port: 8080 });
  assert.equal(config.stateDir, './state');
  assert.deepEqual(config.upstreams.map((u) => u.name), ['github.com', 'gitlab.com', 'bitbucket.org', 'codeberg.org']);
  assert.equal(config.snapshotIntervalMs, 3_600_000);
  assert.equal(config.refCheckIntervalMs, 10_000);
  assert.equal(config.s3, undefined);
});

test('flags override env, env overrides file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cachew-config-'));
  try {
    const file = join(dir, 'c.json');
    await writeFile(file, JSON.stringify({ bind: '127.0.0.1:7000', state: '/file', 'snapshot-interval': '5m', upstream: { 'a.example': 'https://a.example' } }));
    const { config } = loadConfig(['--config', file, '--bind', '127.0.0.1:9000'], { CACHEW_BIND: '127.0.0.1:8000', CACHEW_STATE: '/env' });
    assert.deepEqual(config.bind, { host: '127.0.0.1', port: 9000 });
    assert.equal(config.stateDir, '/env');
    assert.equal(config.snapshotIntervalMs, 300_000);
    assert.deepEqual(config.upstreams, [{ name: 'a.example', baseUrl: 'https://a.example' }]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('repeatable --upstream, durations, S3, read-only, api token', () => {
  const { config } = loadConfig([
    '--upstream', '127.0.0.1:9000=http://127.0.0.1:9000/',
    '--upstream', 'github.com=https://github.com',
    '--snapshot-interval', '0', '--ref-check-interval', '1500ms',
    '--s3-bucket', 'b', '--s3-endpoint', 'http://127.0.0.1:5000', '--s3-prefix', '/p/',
    '--read-only', '--api-token', 'secret', '--memory-limit-mb', '0',
  ], {});
  assert.deepEqual(config.upstreams, [
    { name: '127.0.0.1:9000', baseUrl: 'http://127.0.0.1:9000' },
    { name: 'github.com', baseUrl: 'https://github.com' },
  ]);
  assert.equal(config.snapshotIntervalMs, 0);
  assert.equal(config.refCheckIntervalMs, 1500);
  assert.equal(config.s3?.bucket, 'b');
  assert.equal(config.s3?.endpoint, 'http://127.0.0.1:5000');
  assert.equal(config.s3?.prefix, 'p');
  assert.equal(config.readOnly, true);
  assert.equal(config.apiToken, 'secret');
  assert.equal(config.memoryLimitMb, 0);
});

test('bad input is one clear ConfigError line', async () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--bogus'], {}, /bogus/],
    [['--bind', 'nope'], {}, /--bind: expected HOST:PORT/],
    [['--snapshot-interval', '1 hour'], {}, /--snapshot-interval: invalid duration/],
    [['--upstream', 'x'], {}, /NAME=BASEURL/],
    [['--upstream', 'a=ftp://a'], {}, /http or https/],
    [['--s3-endpoint', 'http://x'], {}, /--s3-bucket: required/],
    [['--disk-limit-mb=-3'], {}, /positive integer/],
    [[], { CACHEW_LOG_LEVEL: 'loud' }, /CACHEW_LOG_LEVEL: must be one of/],
    [['--config', '/nonexistent/cachew.json'], {}, /no such file/],
    [['--upstream-auth', 'github.com=private'], {}, /--upstream-auth: invalid mode "private" \(expected public or passthrough\) for upstream github.com/],
    [['--upstream-auth', 'passthrough'], {}, /--upstream-auth: expected NAME=public\|passthrough/],
    [['--upstream-auth', 'example.org=passthrough'], {}, /--upstream-auth: unknown upstream "example.org" \(configured: github.com, /],
    [[], { CACHEW_UPSTREAM_TOKEN_FILE: 'nope.example=/t' }, /CACHEW_UPSTREAM_TOKEN_FILE: unknown upstream "nope.example"/],
    [['--upstream-auth-deny-ttl', '2m'], {}, /must not be longer than --upstream-auth-ttl/],
  ];
  for (const [argv, env, pattern] of cases) {
    assert.throws(() => loadConfig(argv, env), (err: unknown) => {
      assert.ok(err instanceof ConfigError, `ConfigError for ${argv.join(' ')}`);
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
  }
  const dir = await mkdtemp(join(tmpdir(), 'cachew-config-'));
  try {
    const file = join(dir, 'bad.json');
    await writeFile(file, '{"bind": "127.0.0.1:1", "colour": "blue"}');
    assert.throws(() => loadConfig(['--config', file], {}), /unknown setting "colour"/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('--s3-redirect and its TTL from flags, env and file; refused without S3 or with a bad TTL', async () => {
  assert.equal(loadConfig([], {}).config.s3Redirect, false);
  assert.equal(loadConfig([], {}).config.s3RedirectTtlMs, 300_000);
  const flags = loadConfig(['--s3-bucket', 'b', '--s3-redirect', '--s3-redirect-ttl', '90s'], {}).config;
  assert.equal(flags.s3Redirect, true);
  assert.equal(flags.s3RedirectTtlMs, 90_000);
  const env = loadConfig([], { CACHEW_S3_BUCKET: 'b', CACHEW_S3_REDIRECT: 'true', CACHEW_S3_REDIRECT_TTL: '10m' }).config;
  assert.equal(env.s3Redirect, true);
  assert.equal(env.s3RedirectTtlMs, 600_000);
  const dir = await mkdtemp(join(tmpdir(), 'cachew-config-'));
  try {
    const file = join(dir, 'c.json');
    await writeFile(file, JSON.stringify({ 's3-bucket': 'b', 's3-redirect': true, 's3-redirect-ttl': '1h' }));
    const fromFile = loadConfig(['--config', file], {}).config;
    assert.equal(fromFile.s3Redirect, true);
    assert.equal(fromFile.s3RedirectTtlMs, 3_600_000);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const bad: Array<[string[], Record<string, string>, RegExp]> = [
    [['--s3-redirect'], {}, /^--s3-redirect: needs S3/],
    [[], { CACHEW_S3_REDIRECT: 'maybe' }, /^CACHEW_S3_REDIRECT: expected true or false/],
    [['--s3-bucket', 'b', '--s3-redirect', '--s3-redirect-ttl', '8d'], {}, /^--s3-redirect-ttl: must be between 1s and 7d/],
    [['--s3-bucket', 'b', '--s3-redirect-ttl', '500ms'], {}, /^--s3-redirect-ttl: must be between 1s and 7d/],
    [['--s3-bucket', 'b', '--s3-redirect-ttl', 'soon'], {}, /^--s3-redirect-ttl: invalid duration/],
  ];
  for (const [argv, environment, pattern] of bad) {
    assert.throws(() => loadConfig(argv, environment), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, pattern);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
  }
});

test('per-upstream auth mode and server token: file, env and flags merge per name', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cachew-config-'));
  try {
    const file = join(dir, 'c.json');
    await writeFile(file, JSON.stringify({
      upstream: { 'a.example': 'https://a.example', 'b.example': 'https://b.example', 'c.example': 'https://c.example' },
      'upstream-auth': { 'a.example': 'passthrough', 'b.example': 'passthrough' },
      'upstream-token-file': ['a.example=/run/a-token'],
    }));
    const { config } = loadConfig(
      ['--config', file, '--upstream-auth', 'b.example=public', '--upstream-auth-ttl', '2m', '--upstream-auth-deny-ttl', '5s'],
      { CACHEW_UPSTREAM_TOKEN_ENV: 'c.example=C_TOKEN', CACHEW_UPSTREAM_AUTH: 'c.example=passthrough' },
    );
    assert.deepEqual(config.upstreams, [
      { name: 'a.example', baseUrl: 'https://a.example', auth: 'passthrough', tokenFile: '/run/a-token' },
      { name: 'b.example', baseUrl: 'https://b.example', auth: 'public' },
      { name: 'c.example', baseUrl: 'https://c.example', auth: 'passthrough', tokenEnv: 'C_TOKEN' },
    ]);
    assert.equal(config.authAllowTtlMs, 120_000);
    assert.equal(config.authDenyTtlMs, 5_000);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const defaults = loadConfig([], {}).config;
  assert.ok(defaults.upstreams.every((u) => u.auth === undefined), 'public (no check) unless configured');
  assert.equal(defaults.authAllowTtlMs, 60_000);
});

test('loadConfig does not mutate the defaults', () => {
  loadConfig(['--bind', '127.0.0.1:1234', '--upstream', 'a=http://a'], {});
  assert.deepEqual(DEFAULT_CONFIG.bind, { host: '127.0.0.1', port: 8080 });
  assert.equal(DEFAULT_CONFIG.upstreams.length, 4);
});

test('limits and hygiene settings', () => {
  const { config } = loadConfig([
    '--header-timeout', '2s', '--request-timeout', '1m', '--keep-alive-timeout', '1s', '--idle-timeout', '30s',
    '--max-connections', '300', '--max-upload-pack-mb', '8', '--max-forward-mb', '100',
    '--temp-max-age', '30m', '--sweep-interval', '0', '--min-free-disk-mb', '0',
  ], {});
  assert.deepEqual(config.http, {
    ...DEFAULT_CONFIG.http,
    headersTimeoutMs: 2000,
    requestTimeoutMs: 60_000,
    keepAliveTimeoutMs: 1000,
    idleTimeoutMs: 30_000,
    maxConnections: 300,
    maxUploadPackBytes: 8 * 1024 * 1024,
    maxForwardBytes: 100 * 1024 * 1024,
  });
  assert.deepEqual(config.hygiene, { tempMaxAgeMs: 1_800_000, sweepIntervalMs: 0, minFreeDiskBytes: 0 });
  assert.throws(() => loadConfig(['--header-timeout', '0'], {}), ConfigError);
  assert.throws(() => loadConfig(['--max-connections', '0'], {}), ConfigError);
});
