/**
 * Test fixture for snapshot archives: a small local upstream (bare repository) with fixed dates, whose
 * history covers what a snapshot must carry: regular, executable, empty and lock files, a symlink,
 * nested directories, names with spaces and non-ASCII characters, a path too long for a plain ustar
 * header, a gitlink (submodule), and a larger file edited over several commits so the pack has deltas.
 */
import { mkdir, symlink, writeFile, chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runGit } from '../../command.js';

export interface FixtureUpstream {
  /** The bare upstream repository. */
  bareDir: string;
  /** Commits on `main`, oldest first. */
  commits: string[];
  branch: string;
}

/** Committer/author dates are fixed so every run builds the same objects. */
function dated(seconds: number): Record<string, string> {
  const date = `${seconds} +0000`;
  return { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date };
}

/** Deterministic pseudo-random text (a linear congruential generator), `lines` lines long. */
export function pseudoText(seed: number, lines: number): string {
  let state = seed >>> 0;
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    out.push(`line ${i} ${state.toString(36)} ${(state ^ 0x5bd1e995).toString(16)}`);
  }
  return out.join('\n') + '\n';
}

/** Creates `<root>/upstream.git` and a scratch work dir `<root>/work` (removed again). */
export async function createFixtureUpstream(root: string): Promise<FixtureUpstream> {
  const bareDir = join(root, 'upstream.git');
  const work = join(root, 'work');
  await runGit(['init', '-q', '--bare', '--initial-branch=main', bareDir]);
  await runGit(['init', '-q', '--initial-branch=main', work]);
  const git = (args: string[], time: number): Promise<string> => runGit(args, { cwd: work, env: dated(time) });
  const commits: string[] = [];
  const commit = async (message: string, time: number): Promise<void> => {
    await git(['add', '-A'], time);
    await git(['commit', '-q', '-m', message], time);
    commits.push((await git(['rev-parse', 'HEAD'], time)).trim());
  };

  await writeFile(join(work, 'README.md'), '# fixture\n');
  await writeFile(join(work, 'empty.txt'), '');
  await writeFile(join(work, 'Cargo.lock'), 'version = 3\n[[package]]\nname = "fixture"\n');
  await writeFile(join(work, 'big.txt'), pseudoText(1, 4000));
  await commit('initial', 1_600_000_000);

  await writeFile(join(work, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(work, 'run.sh'), 0o755);
  await symlink('README.md', join(work, 'link-to-readme'));
  await mkdir(join(work, 'nested/a/b/c'), { recursive: true });
  await writeFile(join(work, 'nested/a/b/c/deep.txt'), 'deep\n');
  await mkdir(join(work, 'dir with space'));
  await writeFile(join(work, 'dir with space/ünïcødé ✓ file.txt'), 'unicode\n');
  await writeFile(join(work, 'yarn.lock'), '# yarn lockfile v1\n');
  const longDir = join(work, 'l'.repeat(60), 'o'.repeat(60));
  await mkdir(longDir, { recursive: true });
  await writeFile(join(longDir, 'n'.repeat(90) + '.txt'), 'long path\n');
  await writeFile(join(work, 'big.txt'), pseudoText(1, 4000) + pseudoText(2, 200));
  await commit('more files', 1_600_000_100);

  await writeFile(join(work, 'README.md'), '# fixture\n\nupdated\n');
  await rm(join(work, 'empty.txt'));
  await writeFile(join(work, 'empty-ish.txt'), '\n');
  await writeFile(join(work, 'big.txt'), pseudoText(3, 100) + pseudoText(1, 4000) + pseudoText(2, 200));
  await git(['add', '-A'], 1_600_000_200);
  // A gitlink: a submodule commit id in the tree (no .gitmodules needed for git to accept it). Added
  // after `add -A`, which would drop it again since the work dir has no such directory.
  await git(['update-index', '--add', '--cacheinfo', `160000,${commits[0]},vendor/sub`], 1_600_000_200);
  await git(['commit', '-q', '-m', 'gitlink and edits'], 1_600_000_200);
  commits.push((await git(['rev-parse', 'HEAD'], 1_600_000_200)).trim());

  await runGit(['push', '-q', bareDir, 'main:main'], { cwd: work });
  await rm(work, { recursive: true, force: true });
  return { bareDir, commits, branch: 'main' };
}

/** Adds one more commit to the fixture's upstream `main` (for incremental-fetch scenarios). */
export async function addUpstreamCommit(fixture: FixtureUpstream, root: string, seq: number): Promise<string> {
  const work = join(root, `work-${seq}`);
  await runGit(['clone', '-q', fixture.bareDir, work]);
  const time = 1_600_001_000 + seq * 100;
  await writeFile(join(work, `added-${seq}.txt`), pseudoText(100 + seq, 50));
  await writeFile(join(work, 'big.txt'), pseudoText(1, 4000) + pseudoText(200 + seq, 30));
  await runGit(['add', '-A'], { cwd: work, env: dated(time) });
  await runGit(['commit', '-q', '-m', `commit ${seq}`], { cwd: work, env: dated(time) });
  await runGit(['push', '-q', 'origin', 'HEAD:main'], { cwd: work });
  const sha = (await runGit(['rev-parse', 'HEAD'], { cwd: work })).trim();
  await rm(work, { recursive: true, force: true });
  fixture.commits.push(sha);
  return sha;
}
