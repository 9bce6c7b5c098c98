/**
 * The cachewd binary as a user runs it: bad configuration exits 2 with one line; health and metrics
 * answer; SIGTERM during a long download lets it finish, then exits 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { startUpstream, type Upstream } from './harness/upstream.js';

const CLI = ['--import', 'tsx', 'src/cli/cachewd.ts'];

function run(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [...CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

function exited(child: ChildProcess): Promise<{ code: number | null; stderr: string; stdout: string }> {
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr, stdout })));
}

/** Waits for the 'cachewd listening' log line and returns the URL it names. */
function listeningUrl(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('cachewd did not start within 30 s')), 30_000);
    child.stdout!.on('data', (c: Buffer) => {
      buffered += c.toString();
      for (const line of buffered.split('\n')) {
        if (!line.includes('cachewd listening')) continue;
        clearTimeout(timer);
        resolve((JSON.parse(line) as { url: string }).url);
      }
    });
    child.on('exit', () => reject(new Error('cachewd exited before listening')));
  });
}

/** Resolves when the child logs a line containing `text` (rejects if it exits first). */
function logLine(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (c: Buffer): void => {
      buffered += c.toString();
      if (!buffered.includes(text)) return;
      child.stdout!.off('data', onData);
      resolve();
    };
    child.stdout!.on('data', onData);
    child.once('exit', () => reject(new Error(`cachewd exited before logging "${text}"`)));
  });
}

let upstream: Upstream;
let state: string;
before(async () => {
  upstream = await startUpstream();
  // 12 MiB of incompressible bytes: the snapshot is large enough to still be in flight at SIGTERM.
  await upstream.createRepo('org/big', { 'blob.bin': randomBytes(12 * 1024 * 1024).toString('base64') });
  state = await mkdtemp(join(tmpdir(), 'cachewd-cli-'));
});
after(async () => {
  await upstream?.stop();
  await rm(state, { recursive: true, force: true });
});

test('bad flags and config print one line and exit 2', { timeout: 60_000 }, async () => {
  for (const [args, env] of [
    [['--bind', 'not-a-port'], {}],
    [['--no-such-flag'], {}],
    [['--snapshot-interval', 'soon'], {}],
    [[], { CACHEW_UPSTREAM: 'nonsense' }],
  ] as Array<[string[], Record<string, string>]>) {
    const result = await exited(run(args, env));
    assert.equal(result.code, 2, `${args.join(' ')} exits 2`);
    assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`);
    assert.match(result.stderr, /^cachewd: /);
  }
});

test('refuses to start without git on PATH, with one line and exit 1', { timeout: 60_000 }, async () => {
  const bin = await mkdtemp(join(tmpdir(), 'cachewd-path-'));
  try {
    await symlink(execSync('command -v zstd', { shell: '/bin/sh' }).toString().trim(), join(bin, 'zstd'));
    const result = await exited(run(['--bind', '127.0.0.1:0', '--state', join(bin, 'state')], { PATH: bin }));
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^cachewd: cannot start: git, and zstd unless the zstd-napi addon is built, must be on PATH/);
    assert.equal(result.stderr.trim().split('\n').length, 1);
  } finally {
    await rm(bin, { recursive: true, force: true });
  }
});

test('serves health and metrics; SIGTERM lets a long download finish, then exits 0', { timeout: 120_000 }, async () => {
  const child = run(['--bind', '127.0.0.1:0', '--state', state, '--upstream', `${upstream.hostName}=${upstream.url}`, '--log-level', 'info', '--shutdown-grace', '30s']);
  const done = exited(child);
  const url = await listeningUrl(child);
  assert.equal((await fetch(`${url}/_liveness`)).status, 200);
  assert.equal((await fetch(`${url}/_readiness`)).status, 200);
  const snap = `${url}/git/${upstream.hostName}/org/big/snapshot.tar.zst`;
  const head = await fetch(snap, { method: 'HEAD' });
  assert.equal(head.status, 200);
  const etag = head.headers.get('etag')!.replaceAll('"', '');
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /cachew_http_requests_total\{route="snapshot.stable",method="HEAD",status="200"\} 1/);

  // Start a download, read a little, pause; SIGTERM; then read the rest slowly.
  const result = await new Promise<{ bytes: number; digest: string }>((resolve, reject) => {
    request(snap, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      let signalled = false;
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        if (!signalled && bytes > 256 * 1024) {
          signalled = true;
          res.pause();
          // Once cachewd says it is shutting down, it must still be there for this paused download.
          void logLine(child, 'shutting down').then(() => {
            assert.equal(child.exitCode, null, 'cachewd waits for the in-flight download');
            res.resume();
          }, reject);
          child.kill('SIGTERM');
        }
      });
      res.on('end', () => resolve({ bytes, digest: hash.digest('hex') }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
  assert.equal(result.digest, etag);
  const { code } = await done;
  assert.equal(code, 0);
});
