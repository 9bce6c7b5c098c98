import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UpstreamRegistry } from './upstreams.js';

void test('registry maps names to base URLs and builds repo URLs', () => {
  const registry = new UpstreamRegistry([
    { name: 'github.com', baseUrl: 'https://github.com/' },
    { name: '127.0.0.1:9000', baseUrl: 'http://127.0.0.1:9000' },
  ]);
  assert.equal(registry.get('github.com')?.repoUrl('org/repo'), 'https://github.com/org/repo');
  assert.equal(registry.get('127.0.0.1:9000')?.repoUrl('org/r.git'), 'http://127.0.0.1:9000/org/r.git');
  assert.equal(registry.get('gitlab.com'), undefined);
  assert.equal(registry.list().length, 2);
  assert.equal(registry.get('github.com')?.authorizationHeader(), undefined);
  assert.deepEqual(registry.get('github.com')?.gitEnv(), {});
});

void test('tokens come from the environment or a file, read at each use, never serialised', async (t) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-upstreams-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'token');
  const envName = `CACHEW_TEST_TOKEN_${process.pid}`;
  t.after(() => {
    delete process.env[envName];
  });
  const registry = new UpstreamRegistry([
    { name: 'env', baseUrl: 'https://e.example', tokenEnv: envName },
    { name: 'file', baseUrl: 'https://f.example', tokenFile: file },
  ]);
  const env = registry.get('env')!;
  const fromFile = registry.get('file')!;
  assert.equal(env.authorizationHeader(), undefined);
  process.env[envName] = 'secret-env';
  const basic = (login: string): string => `Basic ${Buffer.from(login).toString('base64')}`;
  assert.equal(env.authorizationHeader(), basic('x-access-token:secret-env'));
  assert.deepEqual(env.gitEnv(), {
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.extraHeader',
    GIT_CONFIG_VALUE_0: `Authorization: ${basic('x-access-token:secret-env')}`,
  });
  assert.equal(fromFile.authorizationHeader(), undefined, 'missing file = no credentials');
  await fs.writeFile(file, 'secret-file\n');
  assert.equal(fromFile.authorizationHeader(), basic('x-access-token:secret-file'));
  await fs.writeFile(file, 'x-token-auth:rotated\n');
  assert.equal(fromFile.authorizationHeader(), basic('x-token-auth:rotated'), 'a rotated file is read at the next use; USER:TOKEN names the user');
  assert.doesNotMatch(JSON.stringify({ env, fromFile }), /secret|rotated/);
});
