/**
 * End-to-end tests of the restore client against the fake snapshot server: the happy path, every
 * injected fault (each either succeeds with the right digest and tree, or fails leaving neither the
 * target nor a temp sibling), malicious archives, target-directory rules, the delta bundle, bounded
 * memory on a snapshot much larger than concurrency × chunk, and the `cachew` CLI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pack as tarPack } from 'tar-stream';
import { NoSnapshotError } from '../src/client/errors.js';
import { restore, type RestoreOptions } from '../src/client/restore.js';
import { git, makeGitFixture, startSnapshotServer, zstdFile, type Fault, type GitFixture, type RequestInfo, type SnapshotServer } from './harness/snapshot-server.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let root: string;
let fixture: GitFixture;

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-restore-'));
  fixture = await makeGitFixture(path.join(root, 'fixture'), { withBundle: true });
  await fs.mkdir(path.join(root, 'out'));
});

after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

let serial = 0;
function targetDir(): string {
  return path.join(root, 'out', `t${serial++}`);
}

async function withServer<T>(
  // `ahead`: the smart-HTTP endpoint is at the newer commit, with no bundle advertised (not made yet).
  options: { fault?: (r: RequestInfo) => Fault | undefined; bundle?: boolean; ahead?: boolean; archive?: string; commit?: string },
  body: (server: SnapshotServer) => Promise<T>,
): Promise<T> {
  const server = await startSnapshotServer({
    archive: options.archive ?? fixture.archive,
    commit: options.commit ?? fixture.commit,
    bundle: options.bundle ? fixture.bundle : undefined,
    fault: options.fault,
    gitRoot: options.bundle || options.ahead ? fixture.newGitRoot : fixture.gitRoot,
  });
  try {
    return await body(server);
  } finally {
    await server.close();
  }
}

function restoreOptions(server: SnapshotServer, dir: string, extra: Partial<RestoreOptions> = {}): RestoreOptions {
  return {
    repoUrl: fixture.upstreamUrl,
    dir,
    serverUrl: server.url,
    chunkSize: 8 * 1024,
    concurrency: 3,
    backoffMs: 10,
    idleTimeoutMs: 2_000,
    ...extra,
  };
}

/**
 * Nothing of a failed restore is left: no directory, and no worker thread still running (a restore
 * settles only once the threads it started stopped; the diagnostic report lists the running ones).
 */
async function assertNothingLeft(dir: string): Promise<void> {
  const names = await fs.readdir(path.dirname(dir));
  const base = path.basename(dir);
  assert.deepEqual(
    names.filter((name) => name === base || name.startsWith(`${base}.cachew-tmp-`)),
    [],
  );
  assert.equal(runningWorkers(), WORKERS_AT_START, 'no worker thread still running');
}

/** This thread's running worker threads, from the diagnostic report (one that is still starting is not listed). */
function runningWorkers(): number {
  return (process.report.getReport() as unknown as { workers: unknown[] }).workers.length;
}

/** Under tsx, Node runs the module loader's hooks on a worker thread of its own: not ours to count. */
const WORKERS_AT_START = runningWorkers();

async function assertGoodClone(dir: string, commit: string): Promise<void> {
  assert.equal(await git(dir, 'rev-parse', 'HEAD'), commit);
  assert.equal(await git(dir, 'status', '--porcelain'), '');
  assert.equal(await git(dir, 'remote', 'get-url', 'origin'), fixture.upstreamUrl);
  assert.equal(await git(dir, 'fsck', '--no-progress'), '');
  const script = await fs.stat(path.join(dir, 'run.sh'));
  assert.equal(script.mode & 0o111, 0o111, 'exec bit kept');
  assert.equal(await fs.readlink(path.join(dir, 'link')), 'src/deep/data.txt');
  const siblings = await fs.readdir(path.dirname(dir));
  assert.ok(!siblings.some((name) => name.startsWith(`${path.basename(dir)}.cachew-tmp-`)), 'temp dir removed');
}

void describe('restore: happy paths', () => {
  void it('restores a clean clone in many chunks, with mtimes from the archive', async () => {
    await withServer({}, async (server) => {
      const dir = targetDir();
      const result = await restore(restoreOptions(server, dir));
      assert.equal(result.digest, server.digest);
      assert.equal(result.bytes, server.size);
      assert.equal(result.commit, fixture.commit);
      assert.equal(result.bundleApplied, false);
      await assertGoodClone(dir, fixture.commit);
      assert.equal(await git(dir, 'describe', '--tags'), 'v1', 'tags come from the smart-HTTP endpoint');
      const upstreamMtime = (await fs.stat(path.join(root, 'fixture/clone/README.md'))).mtime.getTime();
      const restoredMtime = (await fs.stat(path.join(dir, 'README.md'))).mtime.getTime();
      assert.equal(Math.floor(restoredMtime / 1000), Math.floor(upstreamMtime / 1000));
      const immutable = server.requests.filter((r) => r.kind === 'immutable');
      assert.ok(immutable.length >= Math.ceil(server.size / (8 * 1024)) - 1, 'one Range request per remaining chunk');
      assert.equal(server.requests.filter((r) => r.kind === 'stable').length, 1);
    });
  });

  void it('replaces an existing empty directory', async () => {
    await withServer({}, async (server) => {
      const dir = targetDir();
      await fs.mkdir(dir);
      await restore(restoreOptions(server, dir));
      await assertGoodClone(dir, fixture.commit);
    });
  });

  void it('moves to the server head through the ref sync when no bundle is advertised', async () => {
    // The clean check runs during the ref sync; the move must wait for it and check again after.
    await withServer({ ahead: true }, async (server) => {
      const dir = targetDir();
      const result = await restore(restoreOptions(server, dir));
      assert.equal(result.bundleApplied, false);
      assert.equal(result.snapshotCommit, fixture.commit);
      assert.equal(result.commit, fixture.newCommit);
      await assertGoodClone(dir, fixture.newCommit!);
      assert.equal(await fs.readFile(path.join(dir, 'NEW.md'), 'utf8'), 'newer\n');
      await assert.rejects(fs.stat(path.join(dir, '.git', 'ORIG_HEAD')), { code: 'ENOENT' });
    });
  });

  void it('applies the advertised delta bundle (and skips it with bundle: false)', async () => {
    await withServer({ bundle: true }, async (server) => {
      const dir = targetDir();
      const result = await restore(restoreOptions(server, dir));
      assert.equal(result.bundleApplied, true);
      assert.equal(result.commit, fixture.newCommit);
      assert.equal(result.snapshotCommit, fixture.commit);
      await assertGoodClone(dir, fixture.newCommit!);
      assert.equal(await fs.readFile(path.join(dir, 'NEW.md'), 'utf8'), 'newer\n');
      assert.equal(await git(dir, 'rev-parse', 'refs/remotes/origin/main'), fixture.newCommit);

      const plain = targetDir();
      const skipped = await restore(restoreOptions(server, plain, { bundle: false }));
      assert.equal(skipped.bundleApplied, false);
      await assertGoodClone(plain, fixture.commit);
      assert.equal(await git(plain, 'tag'), '', 'bundle: false restores the archive alone');
    });
  });
});

void describe('restore: faults', () => {
  const recoverable: Array<[string, (r: RequestInfo) => Fault | undefined, (s: SnapshotServer, stats: { retries: number; fellBack: boolean }) => void]> = [
    ['drops connections mid-chunk', (r) => (r.kind === 'immutable' && r.index % 3 === 1 ? 'drop' : undefined), (_s, stats) => assert.ok(stats.retries >= 1)],
    ['drops the first response mid-body', (r) => (r.kind === 'stable' ? 'drop' : undefined), (_s, stats) => assert.ok(stats.retries >= 1)],
    ['stalls a chunk', (r) => (r.kind === 'immutable' && r.index === 2 ? 'stall' : undefined), (_s, stats) => assert.ok(stats.retries >= 1)],
    ['answers 500 once', (r) => (r.index === 0 ? 'error-500' : undefined), (_s, stats) => assert.ok(stats.retries >= 1)],
    ['ignores Range on the immutable URL', (r) => (r.kind === 'immutable' ? 'ignore-range' : undefined), (_s, stats) => assert.equal(stats.fellBack, true)],
    ['ignores Range on the stable URL', (r) => (r.kind === 'stable' ? 'ignore-range' : undefined), (s) => assert.equal(s.requests.filter((r) => r.kind === 'immutable').length, 0)],
    ['404s once on the immutable URL (re-resolves)', (r) => (r.kind === 'immutable' && r.index === 0 ? 'not-found' : undefined), (s) => assert.equal(s.requests.filter((r) => r.kind === 'stable').length, 2)],
  ];
  for (const [name, fault, check] of recoverable) {
    void it(`succeeds when the server ${name}`, async () => {
      await withServer({ fault }, async (server) => {
        const dir = targetDir();
        const result = await restore(restoreOptions(server, dir, { idleTimeoutMs: 400 }));
        assert.equal(result.digest, server.digest);
        await assertGoodClone(dir, fixture.commit);
        check(server, result.stats);
      });
    });
  }

  const fatal: Array<[string, (r: RequestInfo) => Fault | undefined, RegExp]> = [
    ['always 404s on the immutable URL', (r) => (r.kind === 'immutable' ? 'not-found' : undefined), /no longer available/],
    ['corrupts one byte', (r) => (r.kind === 'immutable' && r.index === 1 ? 'corrupt' : undefined), /sha256 mismatch|zstd|unsafe|tar|Unexpected|Invalid/i],
    ['drops every immutable request', (r) => (r.kind === 'immutable' ? 'drop' : undefined), /failed after 3 attempts/],
  ];
  for (const [name, fault, message] of fatal) {
    void it(`fails cleanly when the server ${name}`, async () => {
      await withServer({ fault }, async (server) => {
        const dir = targetDir();
        await assert.rejects(restore(restoreOptions(server, dir, { maxAttempts: 3 })), message);
        await assertNothingLeft(dir);
      });
    });
  }

  void it('cleans up when aborted mid-download', async () => {
    await withServer({ fault: (r) => (r.kind === 'immutable' && r.index === 3 ? 'stall' : undefined) }, async (server) => {
      const dir = targetDir();
      const controller = new AbortController();
      const started = Date.now();
      const restoring = restore(
        restoreOptions(server, dir, {
          signal: controller.signal,
          idleTimeoutMs: 60_000,
          onProgress: (p) => {
            if (p.bytes > 0) setTimeout(() => controller.abort(), 100);
          },
        }),
      );
      await assert.rejects(restoring, /abort/i);
      assert.ok(Date.now() - started < 10_000, 'abort does not wait for the stalled request');
      await assertNothingLeft(dir);
    });
  });

  void it('reports NoSnapshotError when the stable URL is 404', async () => {
    await withServer({ fault: () => 'not-found' }, async (server) => {
      const dir = targetDir();
      await assert.rejects(restore(restoreOptions(server, dir)), (err) => err instanceof NoSnapshotError);
      await assertNothingLeft(dir);
    });
  });

  void it('refuses a non-empty target without touching it', async () => {
    await withServer({}, async (server) => {
      const dir = targetDir();
      await fs.mkdir(dir);
      await fs.writeFile(path.join(dir, 'keep.txt'), 'mine');
      await assert.rejects(restore(restoreOptions(server, dir)), /already exists/);
      assert.deepEqual(await fs.readdir(dir), ['keep.txt']);
      assert.equal(server.requests.length, 0, 'no request made');
      const siblings = await fs.readdir(path.dirname(dir));
      assert.ok(!siblings.some((name) => name.includes('.cachew-tmp-')));
    });
  });
});

void describe('restore: malicious archives', () => {
  type Spec = { name: string; type?: 'file' | 'symlink' | 'link' | 'fifo'; linkname?: string; body?: string };
  async function maliciousArchive(name: string, entries: Spec[]): Promise<string> {
    const tarFile = path.join(root, `${name}.tar`);
    const pack = tarPack();
    const written = fs.writeFile(tarFile, pack as unknown as AsyncIterable<Buffer>);
    for (const entry of entries) {
      pack.entry({ name: entry.name, type: entry.type ?? 'file', linkname: entry.linkname, mode: 0o644, mtime: new Date(0) }, entry.body ?? '');
    }
    pack.finalize();
    await written;
    const zst = `${tarFile}.zst`;
    await zstdFile(tarFile, zst);
    return zst;
  }

  let outside: string;
  before(async () => {
    outside = path.join(root, 'outside');
    await fs.mkdir(outside, { recursive: true });
  });

  const cases: Array<[string, () => Spec[], RegExp]> = [
    ['a ../ entry', () => [{ name: 'ok.txt', body: 'ok' }, { name: '../escaped.txt', body: 'evil' }], /\.\./],
    ['an absolute entry', () => [{ name: path.join(outside, 'abs.txt'), body: 'evil' }], /absolute/],
    ['a file through an earlier symlink', () => [{ name: 'link', type: 'symlink', linkname: outside }, { name: 'link/evil.txt', body: 'evil' }], /symlink/],
    ['a hardlink', () => [{ name: 'a.txt', body: 'a' }, { name: 'b.txt', type: 'link', linkname: '/etc/passwd' }], /hardlink/],
    ['a fifo', () => [{ name: 'pipe', type: 'fifo' }], /fifo/],
  ];
  for (const [name, entries, message] of cases) {
    void it(`rejects ${name} without writing outside the target`, async () => {
      const archive = await maliciousArchive(`evil-${serial}`, entries());
      await withServer({ archive }, async (server) => {
        const dir = targetDir();
        await assert.rejects(restore(restoreOptions(server, dir)), message);
        await assertNothingLeft(dir);
        assert.deepEqual(await fs.readdir(outside), []);
        await assert.rejects(fs.stat(path.join(root, 'out', 'escaped.txt')));
      });
    });
  }
});

void describe('restore: bounded memory', () => {
  void it('restores 40 MiB of incompressible data with ≤ (concurrency+1) × chunk buffered', { timeout: 120_000 }, async () => {
    const dir = path.join(root, 'big-src');
    await fs.mkdir(dir);
    const blob = path.join(dir, 'blob.bin');
    const handle = await fs.open(blob, 'w');
    const piece = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 40; i++) {
      for (let j = 0; j < piece.length; j += 4) piece.writeUInt32LE((Math.random() * 0x100000000) >>> 0, j);
      await handle.write(piece);
    }
    await handle.close();
    const expected = await sha256(blob);
    const tarFile = path.join(root, 'big.tar');
    await new Promise<void>((resolve, reject) =>
      execFile('tar', ['-C', dir, '-cf', tarFile, '.'], (err) => (err ? reject(err) : resolve())),
    );
    const archive = `${tarFile}.zst`;
    await zstdFile(tarFile, archive);
    await fs.rm(tarFile);
    await withServer({ archive }, async (server) => {
      assert.ok(server.size > 40 * 1024 * 1024);
      const target = targetDir();
      const chunk = 1024 * 1024;
      const result = await restore(restoreOptions(server, target, { chunkSize: chunk, concurrency: 4 }));
      assert.equal(result.digest, server.digest);
      assert.equal(await sha256(path.join(target, 'blob.bin')), expected);
      assert.ok(result.stats.maxBufferedBytes > 0);
      assert.ok(result.stats.maxBufferedBytes <= 5 * chunk, `buffered ${result.stats.maxBufferedBytes} bytes`);
      assert.ok(server.requests.filter((r) => r.kind === 'immutable').length >= 40);
    });
  });
});

void describe('cachew CLI', () => {
  function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', path.join(REPO_ROOT, 'src/cli/cachew.ts'), ...args],
        { cwd: REPO_ROOT, timeout: 60_000, env: { ...process.env, CACHEW_URL: '' } },
        (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  }

  void it('restores with --json, exits 2 without a snapshot, 1 on a bad flag', async () => {
    await withServer({ fault: (r) => (r.kind === 'stable' && r.index === 1 ? 'not-found' : undefined) }, async (server) => {
      const dir = targetDir();
      const ok = await runCli(['git', 'restore', fixture.upstreamUrl, dir, '--url', server.url, '--chunk-size', '16KiB', '--concurrency', '2', '--json']);
      assert.equal(ok.code, 0, ok.stderr);
      const summary = JSON.parse(ok.stdout) as Record<string, unknown>;
      assert.deepEqual(Object.keys(summary).sort(), ['bundleApplied', 'bytes', 'commit', 'digest', 'seconds']);
      assert.equal(summary.commit, fixture.commit);
      assert.equal(summary.digest, server.digest);
      await assertGoodClone(dir, fixture.commit);

      const missing = await runCli(['git', 'restore', fixture.upstreamUrl, targetDir(), '--url', server.url]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /no snapshot for/);
      assert.equal(missing.stderr.trim().split('\n').length, 1, 'one line, no stack trace');

      const bad = await runCli(['git', 'restore', fixture.upstreamUrl, targetDir(), '--chunk-size', 'lots']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /invalid size/);
    });
  });
});

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
