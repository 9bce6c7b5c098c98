/**
 * Restore findings of issue 8 (item 8), end to end: every name git accepts restores into a clean
 * clone through the real server; the error reported is the first real one (not the decompressor's
 * broken pipe); a restore killed mid-way leaves a temp sibling that the next restore removes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TAR_END, encodeTarHeader, tarPadding } from '../src/git/snapshot/tar-writer.js';
import { restore } from '../src/client/restore.js';
import { startCachew, type TestCachew } from './harness/cachew.js';
import { git, makeGitFixture, startSnapshotServer, zstdFile, type GitFixture } from './harness/snapshot-server.js';
import { startUpstream, type Upstream } from './harness/upstream.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let root: string;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-restore-extract-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

void describe('names git accepts', () => {
  let upstream: Upstream;
  let cachew: TestCachew;
  before(async () => {
    upstream = await startUpstream();
    cachew = await startCachew([upstream]);
  });
  after(async () => {
    await cachew?.stop();
    await upstream?.stop();
  });

  void it('restores non-UTF-8, C:, long and odd names into a clean clone', { timeout: 120_000 }, async () => {
    // Built with git itself in a work tree, so every name is one git really accepts.
    const work = path.join(root, 'names-work');
    await fs.mkdir(work);
    await git(work, 'init', '-q', '-b', 'main');
    const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]); // "café.txt" in Latin-1
    const names: Buffer[] = [
      latin1,
      Buffer.from('C:'),
      Buffer.from('back\\slash'),
      Buffer.from('tab\tand space'),
      Buffer.from(`${'d'.repeat(120)}/${'f'.repeat(90)}`), // ustar prefix + name
      Buffer.from(`${'p'.repeat(170)}/${'q'.repeat(120)}`), // pax path
      Buffer.concat([Buffer.from('dir-'), Buffer.from([0xff, 0xfe]), Buffer.from('/inner')]),
    ];
    for (const [i, name] of names.entries()) {
      const full = Buffer.concat([Buffer.from(`${work}/`), name]);
      const slash = name.lastIndexOf(0x2f);
      if (slash > 0) await fs.mkdir(Buffer.concat([Buffer.from(`${work}/`), name.subarray(0, slash)]), { recursive: true });
      await fs.writeFile(full, `file ${i}\n`);
    }
    await git(work, '-c', 'core.quotePath=false', 'add', '-A');
    await git(work, 'commit', '-q', '-m', 'odd names');
    const bare = path.join(upstream.root, 'org', 'names.git');
    await fs.mkdir(path.dirname(bare), { recursive: true });
    await git(root, 'clone', '-q', '--bare', work, bare);
    const head = await git(work, 'rev-parse', 'HEAD');

    const dir = path.join(root, 'names-clone');
    const result = await restore({ repoUrl: `${upstream.url}/org/names`, dir, serverUrl: cachew.url });
    assert.equal(result.commit, head);
    assert.equal(await git(dir, 'status', '--porcelain'), '');
    for (const [i, name] of names.entries()) {
      assert.equal(await fs.readFile(Buffer.concat([Buffer.from(`${dir}/`), name]), 'utf8'), `file ${i}\n`, name.toString('latin1'));
    }
  });
});

void describe('errors and leftovers', () => {
  let fixture: GitFixture;
  before(async () => {
    fixture = await makeGitFixture(path.join(root, 'fixture'));
  });

  void it('reports the unsafe entry, not the decompressor it had to stop', { timeout: 60_000 }, async () => {
    // The unsafe entry comes first and megabytes follow, so zstd is still writing when we stop reading.
    const tarFile = path.join(root, 'evil-first.tar');
    const big = randomBytes(8 * 1024 * 1024);
    const mtime = 1_600_000_000;
    await fs.writeFile(
      tarFile,
      Buffer.concat([
        encodeTarHeader({ path: '../escaped.txt', type: 'file', mode: 0o644, size: 4, mtime }),
        Buffer.from('evil'),
        tarPadding(4),
        encodeTarHeader({ path: 'big.bin', type: 'file', mode: 0o644, size: big.length, mtime }),
        big,
        TAR_END,
      ]),
    );
    const archive = `${tarFile}.zst`;
    await zstdFile(tarFile, archive);
    const server = await startSnapshotServer({ archive, commit: fixture.commit });
    try {
      const dir = path.join(root, 'evil-target');
      await assert.rejects(restore({ repoUrl: fixture.upstreamUrl, dir, serverUrl: server.url, chunkSize: 64 * 1024 }), (err: unknown) => {
        assert.match(String(err), /unsafe snapshot archive: entry name "\.\.\/escaped\.txt" contains "\.\."/);
        return true;
      });
      assert.deepEqual((await fs.readdir(root)).filter((name) => name.startsWith('evil-target') || name === 'escaped.txt'), []);
    } finally {
      await server.close();
    }
  });

  void it('a restore killed mid-download leaves a temp sibling that the next restore removes', { timeout: 120_000 }, async () => {
    let stalled!: () => void;
    const stalledSeen = new Promise<void>((resolve) => (stalled = resolve));
    let stall = true;
    const server = await startSnapshotServer({
      archive: fixture.archive,
      commit: fixture.commit,
      gitRoot: fixture.gitRoot,
      fault: (request) => {
        if (request.kind !== 'immutable' || !stall) return undefined;
        stalled();
        return 'stall';
      },
    });
    const dir = path.join(root, 'killed');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(REPO_ROOT, 'src/cli/cachew.ts'), 'git', 'restore', fixture.upstreamUrl, dir, '--url', server.url, '--chunk-size', '8KiB'],
      { cwd: REPO_ROOT, stdio: 'ignore', env: { ...process.env, CACHEW_URL: '' } },
    );
    const exited = new Promise((resolve) => child.on('close', resolve));
    try {
      await stalledSeen; // the temp sibling exists once the download is under way
      child.kill('SIGKILL');
      await exited;
      const leftovers = (await fs.readdir(root)).filter((name) => name.startsWith('killed.cachew-tmp-'));
      assert.equal(leftovers.length, 1, 'the killed client left its temp sibling');

      stall = false;
      const result = await restore({ repoUrl: fixture.upstreamUrl, dir, serverUrl: server.url });
      assert.equal(result.commit, fixture.commit);
      assert.deepEqual((await fs.readdir(root)).filter((name) => name.startsWith('killed')), ['killed']);
    } finally {
      child.kill('SIGKILL');
      await server.close();
    }
  });
});
