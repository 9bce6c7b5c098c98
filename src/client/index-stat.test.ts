import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { lstatSync } from 'node:fs';
import { adoptWorkTreeStats } from './index-stat.js';
import { StatRecorder, StatTable } from './stat-table.js';

const exec = promisify(execFile);
// No automatic gc: a detached one would still be writing objects when the directory is removed.
const env = { PATH: process.env.PATH, GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'gc.auto', GIT_CONFIG_VALUE_0: '0', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' };
const git = async (cwd: string, ...args: string[]): Promise<string> => (await exec('git', args, { cwd, env, maxBuffer: 64 << 20 })).stdout.trim();

/** Enough entries (of about 220 bytes) for several lstat batches and an index over one 1 MiB read. */
const FILES = 5_000;
const LONG_DIR = 'a-long-directory-name-'.repeat(7);

let root: string;

/** A committed repository (git writes a v2 index with a TREE extension) with the snapshot's keys. */
async function makeRepo(name: string, files = FILES): Promise<string> {
  const dir = path.join(root, name);
  await fs.mkdir(dir);
  await git(dir, 'init', '-q', '-b', 'main');
  for (let d = 0; d < files / 100; d++) {
    const sub = path.join(dir, `dir-${d}`, LONG_DIR);
    await fs.mkdir(sub, { recursive: true });
    await Promise.all(Array.from({ length: 100 }, (_, f) => fs.writeFile(path.join(sub, `file-${f}.txt`), `${d}/${f}\n`)));
  }
  await fs.writeFile(path.join(dir, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  await fs.symlink('run.sh', path.join(dir, 'link'));
  await git(dir, 'add', '-A');
  await git(dir, 'commit', '-q', '-m', 'files');
  await git(dir, 'config', 'core.checkStat', 'minimal');
  await git(dir, 'config', 'core.trustctime', 'false');
  return dir;
}

/** Replaces every regular file by a copy with the same content and mtime: new inodes and ctimes. */
async function replaceFiles(dir: string): Promise<void> {
  const files = (await git(dir, 'ls-files', '-s')).split('\n').filter((l) => l.startsWith('100')).map((l) => l.split('\t')[1]!);
  for (let i = 0; i < files.length; i += 200) {
    await Promise.all(
      files.slice(i, i + 200).map(async (name) => {
        const file = path.join(dir, name);
        const st = await fs.stat(file);
        await fs.copyFile(file, `${file}.tmp`);
        await fs.chmod(`${file}.tmp`, st.mode);
        await fs.utimes(`${file}.tmp`, st.atime, st.mtime);
        await fs.rename(`${file}.tmp`, file);
      }),
    );
  }
}

/** Entries whose recorded stat data differs from the file under git's default rules (no refresh). */
async function statDirty(dir: string): Promise<number> {
  const out = await git(dir, '-c', 'core.checkStat=default', '-c', 'core.trustctime=true', 'diff-files', '--name-only');
  return out === '' ? 0 : out.split('\n').length;
}

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-index-stat-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

void describe('adoptWorkTreeStats', { timeout: 240_000 }, () => {
  void it('records the real stat data of every file and drops the snapshot keys', async () => {
    const dir = await makeRepo('adopt');
    assert.ok((await fs.stat(path.join(dir, '.git/index'))).size > 1024 * 1024, 'the index spans several reads');
    await replaceFiles(dir);
    assert.ok((await statDirty(dir)) >= FILES, 'the index no longer describes the files');
    assert.equal(await adoptWorkTreeStats(dir), 'adopted');
    assert.equal(await statDirty(dir), 0, 'every entry matches its file under the default rules');
    await assert.rejects(git(dir, 'config', '--get', 'core.checkStat'));
    await assert.rejects(git(dir, 'config', '--get', 'core.trustctime'));
    assert.equal(await git(dir, 'status', '--porcelain'), '');
    await git(dir, 'fsck', '--no-progress');
    assert.equal(await git(dir, 'ls-files'), await git(dir, 'ls-tree', '-r', '--name-only', 'HEAD'));
    assert.ok((await fs.readdir(path.join(dir, '.git'))).every((n) => n !== 'index.lock'));
  });

  void it('takes the stat data the extraction recorded, and lstats the files it did not record', async () => {
    const dir = await makeRepo('recorded', 300);
    await replaceFiles(dir);
    const files = (await git(dir, 'ls-files')).split('\n');
    const recorder = new StatRecorder();
    // Every other file recorded truthfully; one recorded with another inode, which only the table
    // can have put into the index (an lstat would give the real one).
    const faked = files[2];
    for (const [i, name] of files.entries()) {
      if (i % 2 !== 0) continue;
      const stats = lstatSync(path.join(dir, name), { bigint: true });
      recorder.record(name, name === faked ? { ...stats, ino: stats.ino + 1n } : stats);
    }
    assert.equal(await adoptWorkTreeStats(dir, undefined, new StatTable(recorder.take())), 'adopted');
    assert.equal(await git(dir, '-c', 'core.checkStat=default', 'diff-files', '--name-only'), faked);
  });

  void it('declines when a recorded entry is of another type than the index says, changing nothing', async () => {
    const dir = await makeRepo('mistyped', 100);
    const index = await fs.readFile(path.join(dir, '.git/index'));
    const recorder = new StatRecorder();
    recorder.record('run.sh', lstatSync(path.join(dir, 'link'), { bigint: true })); // a symlink's data for a file
    assert.equal(await adoptWorkTreeStats(dir, undefined, new StatTable(recorder.take())), 'unsupported index');
    assert.deepEqual(await fs.readFile(path.join(dir, '.git/index')), index);
    assert.equal(await git(dir, 'config', '--get', 'core.checkStat'), 'minimal');
  });

  void it('leaves a repository without the snapshot keys alone', async () => {
    const dir = path.join(root, 'plain');
    await fs.mkdir(dir);
    await git(dir, 'init', '-q');
    await fs.writeFile(path.join(dir, 'a'), 'a\n');
    await git(dir, 'add', 'a');
    const index = await fs.readFile(path.join(dir, '.git/index'));
    assert.equal(await adoptWorkTreeStats(dir), 'not a snapshot index');
    assert.deepEqual(await fs.readFile(path.join(dir, '.git/index')), index);
  });

  void it('declines an index whose checksum is wrong, changing nothing', async () => {
    const dir = await makeRepo('corrupt', 100);
    const indexPath = path.join(dir, '.git/index');
    const index = await fs.readFile(indexPath);
    index[100] ^= 0xff;
    await fs.writeFile(indexPath, index);
    assert.equal(await adoptWorkTreeStats(dir), 'unsupported index');
    assert.deepEqual(await fs.readFile(indexPath), index);
    assert.equal(await git(dir, 'config', '--get', 'core.checkStat'), 'minimal');
    assert.ok((await fs.readdir(path.join(dir, '.git'))).every((n) => n !== 'index.lock'));
  });
});
