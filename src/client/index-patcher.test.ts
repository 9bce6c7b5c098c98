import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IndexPatcher } from './index-patcher.js';
import { TreeWriter } from './tree-writer.js';

/** A small committed repository: its index is what the archive's `.git/index` would be. */
const FILES: Array<{ name: string; content: string; mode: number }> = [
  { name: 'README.md', content: 'hello\n', mode: 0o644 },
  { name: 'src/main.c', content: 'int main(void) { return 0; }\n', mode: 0o644 },
  { name: 'tools/run.sh', content: '#!/bin/sh\necho run\n', mode: 0o755 },
];
const LINK = { name: 'docs', target: 'src' };
const MTIME = 1_700_000_000;

let root: string;
let source: string;
let indexBytes: Buffer;

function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: root } });
}

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'cachew-patcher-'));
  source = path.join(root, 'source');
  fs.mkdirSync(source);
  git(source, 'init', '-q');
  for (const file of FILES) {
    fs.mkdirSync(path.dirname(path.join(source, file.name)), { recursive: true });
    fs.writeFileSync(path.join(source, file.name), file.content, { mode: file.mode });
  }
  fs.symlinkSync(LINK.target, path.join(source, LINK.name));
  git(source, 'add', '-A');
  git(source, '-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '-m', 'one');
  indexBytes = fs.readFileSync(path.join(source, '.git/index'));
});
after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

interface Extraction {
  target: string;
  patched?: Buffer;
}

/** Writes the index and the work tree through an IndexPatcher in front of a real TreeWriter. */
function extract(name: string, steps: (sink: IndexPatcher) => void): Extraction {
  const target = path.join(root, name);
  fs.mkdirSync(target);
  const patcher = new IndexPatcher();
  const writer = new TreeWriter(target, 0o022, patcher);
  patcher.setNext(writer);
  steps(patcher);
  writer.finish();
  const result = patcher.result();
  return { target, patched: result === undefined ? undefined : Buffer.from(result) };
}

function writeIndex(sink: IndexPatcher, bytes = indexBytes): void {
  sink.directory('.git', 0o755, MTIME);
  sink.fileStart('.git/index', 0o644, MTIME, bytes.length);
  // In two pieces, as the tar filter may hand it over.
  sink.fileData(bytes.subarray(0, 40));
  sink.fileData(bytes.subarray(40));
  sink.fileEnd();
}

function writeFile(sink: IndexPatcher, name: string, content: string, mode: number): void {
  sink.fileStart(name, mode, MTIME, Buffer.byteLength(content));
  sink.fileData(Buffer.from(content));
  sink.fileEnd();
}

function writeTree(sink: IndexPatcher): void {
  for (const file of FILES) writeFile(sink, file.name, file.content, file.mode);
  sink.symlink(LINK.name, LINK.target, MTIME);
}

/** Paths git considers changed in `workTree` when it trusts `index`'s stat data (no refresh). */
function statDirty(workTree: string, index: Buffer): string[] {
  const gitDir = path.join(root, `gitdir-${path.basename(workTree)}`);
  fs.cpSync(path.join(source, '.git'), gitDir, { recursive: true });
  fs.writeFileSync(path.join(gitDir, 'index'), index);
  const out = git(workTree, `--git-dir=${gitDir}`, `--work-tree=${workTree}`, 'diff-files', '--name-only');
  return out.split('\n').filter((line) => line !== '');
}

void describe('IndexPatcher', () => {
  void it('patches every entry with the written files’ stat data when the tree is exact', () => {
    const { target, patched } = extract('exact', (sink) => {
      writeIndex(sink);
      writeTree(sink);
    });
    assert.ok(patched, 'an exact tree gives a patched index');
    assert.equal(patched.length, indexBytes.length);
    const body = patched.length - 20;
    assert.ok(createHash('sha1').update(patched.subarray(0, body)).digest().equals(patched.subarray(body)), 'checksum is valid');
    assert.ok(!patched.equals(indexBytes), 'stat data changed');
    // git trusts the patched stat data: nothing looks modified without a refresh...
    assert.deepEqual(statDirty(target, patched), []);
    // ...while the source's own index (other inodes and times) makes every entry stat-dirty.
    assert.equal(statDirty(target, indexBytes).length, FILES.length + 1);
  });

  void it('gives nothing when a file outside the index is written', () => {
    const { patched } = extract('untracked', (sink) => {
      writeIndex(sink);
      writeTree(sink);
      writeFile(sink, 'stray.txt', 'not in the index\n', 0o644);
    });
    assert.equal(patched, undefined);
  });

  void it('gives nothing when a file’s size differs from the index', () => {
    const { patched } = extract('size', (sink) => {
      writeIndex(sink);
      for (const file of FILES) writeFile(sink, file.name, file.name === 'README.md' ? 'hello, world\n' : file.content, file.mode);
      sink.symlink(LINK.name, LINK.target, MTIME);
    });
    assert.equal(patched, undefined);
  });

  void it('gives nothing when the executable bit differs from the index', () => {
    const { patched } = extract('exec', (sink) => {
      writeIndex(sink);
      for (const file of FILES) writeFile(sink, file.name, file.content, 0o644);
      sink.symlink(LINK.name, LINK.target, MTIME);
    });
    assert.equal(patched, undefined);
  });

  void it('gives nothing when an entry is missing from the tree', () => {
    const { patched } = extract('missing', (sink) => {
      writeIndex(sink);
      for (const file of FILES) writeFile(sink, file.name, file.content, file.mode);
    });
    assert.equal(patched, undefined);
  });

  void it('gives nothing when files come before the index', () => {
    const { patched } = extract('order', (sink) => {
      writeTree(sink);
      writeIndex(sink);
    });
    assert.equal(patched, undefined);
  });

  void it('gives nothing for an index whose checksum is wrong', () => {
    const broken = Buffer.from(indexBytes);
    broken[broken.length - 1] ^= 0xff;
    const { patched } = extract('checksum', (sink) => {
      writeIndex(sink, broken);
      writeTree(sink);
    });
    assert.equal(patched, undefined);
  });

  void it('gives nothing for an index with a gitlink (a submodule: never a file the tree writes)', () => {
    const withLink = path.join(root, 'gitlink-source');
    fs.cpSync(source, withLink, { recursive: true, verbatimSymlinks: true });
    git(withLink, 'update-index', '--add', '--cacheinfo', `160000,${'1'.repeat(40)},sub`);
    const linkedIndex = fs.readFileSync(path.join(withLink, '.git/index'));
    const { patched } = extract('gitlink', (sink) => {
      writeIndex(sink, linkedIndex);
      writeTree(sink);
    });
    assert.equal(patched, undefined);
  });
});
