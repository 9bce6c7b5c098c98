/**
 * SPEC §5 determinism: snapshot bytes are a pure function of (upstream URL, commit, format, tool
 * versions). Independent mirrors with different pack layouts, extra objects, their own pack settings
 * and different fetch histories must produce byte-identical archives of the same commit.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGit } from '../src/git/command.js';
import { generateSnapshot, type SnapshotResult } from '../src/git/snapshot/archive.js';
import {
  addUpstreamCommit,
  createFixtureUpstream,
  pseudoText,
  type FixtureUpstream,
} from '../src/git/snapshot/testing/archive-fixture.js';

const URL = 'https://example.com/org/fixture.git';

void describe('snapshot determinism', { timeout: 170_000 }, () => {
  let root: string;
  let fixture: FixtureUpstream;
  const mirrors: Record<string, string> = {};
  let outputs = 0;

  /** Generates into a fresh file (and scratch dir) so no path is shared between runs. */
  async function snapshot(mirror: string, commit: string, url = URL): Promise<SnapshotResult> {
    const dir = join(root, `out-${outputs++}`);
    await mkdir(dir);
    const result = await generateSnapshot({ gitDir: mirror, commit, upstreamUrl: url, defaultBranch: 'main' }, join(dir, 'snap.tar.zst'));
    await rm(dir, { recursive: true, force: true });
    return result;
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cachew-determinism-'));
    fixture = await createFixtureUpstream(root);

    // Mirror C follows upstream incrementally: cloned early, then fetched after every new commit.
    mirrors.incremental = join(root, 'incremental.git');
    await runGit(['clone', '-q', '--mirror', fixture.bareDir, mirrors.incremental]);
    for (let seq = 1; seq <= 3; seq++) {
      await addUpstreamCommit(fixture, root, seq);
      await runGit(['fetch', '-q', '--prune', 'origin'], { cwd: mirrors.incremental });
    }

    // Mirror A: a plain mirror clone of the final upstream.
    mirrors.plain = join(root, 'plain.git');
    await runGit(['clone', '-q', '--mirror', fixture.bareDir, mirrors.plain]);

    // Mirror B: the same objects plus unrelated ones, repacked with other delta settings and bitmaps,
    // and a config that would change pack output if snapshot generation honoured it.
    const b = join(root, 'repacked.git');
    mirrors.repacked = b;
    await runGit(['clone', '-q', '--mirror', fixture.bareDir, b]);
    const blob = (await runGit(['hash-object', '-w', '--stdin'], { cwd: b, input: pseudoText(77, 500) })).trim();
    const tree = (await runGit(['mktree'], { cwd: b, input: `100644 blob ${blob}\tother.txt\n` })).trim();
    const env = { GIT_AUTHOR_DATE: '1700000000 +0000', GIT_COMMITTER_DATE: '1700000000 +0000' };
    const other = (await runGit(['commit-tree', tree, '-m', 'unrelated'], { cwd: b, env })).trim();
    await runGit(['update-ref', 'refs/heads/unrelated', other], { cwd: b });
    await runGit(['repack', '-q', '-a', '-d', '-f', '-b', '--window=250', '--depth=10'], { cwd: b });
    await runGit(['hash-object', '-w', '--stdin'], { cwd: b, input: 'a loose object\n' });
    for (const [key, value] of [
      ['pack.threads', '4'],
      ['core.compression', '1'],
      ['pack.compression', '9'],
      ['pack.window', '3'],
      ['pack.depth', '2'],
      ['pack.useBitmaps', 'true'],
      ['pack.writeReverseIndex', 'true'],
    ]) {
      await runGit(['config', key, value], { cwd: b });
    }
    await writeFile(join(b, 'description'), 'machine-specific description\n');
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  void it('gives identical bytes from independent mirrors for the head commit', async () => {
    const head = fixture.commits[fixture.commits.length - 1];
    const plain = await snapshot(mirrors.plain, head);
    const repacked = await snapshot(mirrors.repacked, head);
    const incremental = await snapshot(mirrors.incremental, head);
    assert.equal(repacked.sha256, plain.sha256);
    assert.equal(incremental.sha256, plain.sha256);
    assert.equal(repacked.size, plain.size);
    assert.equal(incremental.size, plain.size);
  });

  void it('gives identical bytes for an older commit too, and for the same mirror run twice', async () => {
    const older = fixture.commits[2];
    const first = await snapshot(mirrors.plain, older);
    const again = await snapshot(mirrors.plain, older);
    const repacked = await snapshot(mirrors.repacked, older);
    const incremental = await snapshot(mirrors.incremental, older);
    assert.equal(again.sha256, first.sha256);
    assert.equal(repacked.sha256, first.sha256);
    assert.equal(incremental.sha256, first.sha256);
    const head = await snapshot(mirrors.plain, fixture.commits[fixture.commits.length - 1]);
    assert.notEqual(head.sha256, first.sha256, 'different commits give different archives');
  });

  void it('depends on the upstream URL (it is part of the archived config)', async () => {
    const head = fixture.commits[fixture.commits.length - 1];
    const a = await snapshot(mirrors.plain, head, URL);
    const b = await snapshot(mirrors.plain, head, 'https://example.org/elsewhere.git');
    assert.notEqual(a.sha256, b.sha256);
  });
});
