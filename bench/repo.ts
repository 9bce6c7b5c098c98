/**
 * The synthetic repository the benchmarks run on, built once per size and cached under `.bench/`
 * (git-ignored), so a re-run starts measuring within seconds.
 *
 * Shaped like the history of a real source tree (successive versions): for the default 160 MB, an
 * initial import of ~13k files (about 75% of the bytes source-like text, mostly small files, 25%
 * binary-ish files of 1–4 MiB, half incompressible, half 2:1 compressible, a few executable scripts
 * and symlinks), then 320 versions on the first-parent line. Each version edits ~1.5% of the text
 * files (about 1% of their lines, plus a few appended), adds a few files and removes one; every 40th also replaces
 * a binary. So the history is deep (past several snapshot layer boundaries) and every commit has a
 * realistic amount of new objects. Objects are streamed into `git fast-import` (nothing touches a
 * work tree), then `git repack -adf` gives the well-deltified pack a real host would serve. Fixed
 * seeds and dates make the commit ids a pure function of the size.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { Rng, binaryContent, editText, textContent } from './content.js';
import { MiB, log, run } from './util.js';

/** Bump when the generator changes, so stale caches are not reused. */
const GENERATOR_VERSION = 3;
/** Versions after the initial import: the first-parent history is 1 + VERSIONS commits deep. */
const VERSIONS = 320;
/** Share of the text files a version edits. */
const EDIT_SHARE = 0.015;
/** Share of an edited file's lines a version rewrites (real version-to-version diffs are small). */
const LINE_SHARE = 0.01;
/** Every this many versions, one binary file is replaced too. */
const BINARY_EVERY = 40;
const EPOCH = 1_700_000_000;

export interface BenchRepo {
  /** The bare repository (serve it; never modify it). */
  gitDir: string;
  sizeMb: number;
  files: number;
  treeBytes: number;
  commits: number;
  head: string;
  packBytes: number;
}

interface FileState {
  mode: '100644' | '100755' | '120000';
  content: Buffer;
}

/** Returns the cached repository for `sizeMb`, generating it first if needed. */
export async function ensureBenchRepo(sizeMb: number, cacheRoot: string): Promise<BenchRepo> {
  const key = `repo-v${GENERATOR_VERSION}-${sizeMb}mb`;
  const finalDir = path.resolve(cacheRoot, key);
  const infoPath = path.join(finalDir, 'info.json');
  try {
    // The cache may have been moved with the checkout: the location is always recomputed.
    const info = JSON.parse(await readFile(infoPath, 'utf8')) as BenchRepo;
    return { ...info, gitDir: path.join(finalDir, 'bench.git') };
  } catch {
    // not built yet (or an interrupted build): build it below
  }
  const buildDir = path.resolve(cacheRoot, `${key}.building`);
  await rm(buildDir, { recursive: true, force: true });
  await rm(finalDir, { recursive: true, force: true });
  await mkdir(buildDir, { recursive: true });
  const gitDir = path.join(buildDir, 'bench.git');
  log(`generating a ${sizeMb} MB synthetic repository in ${finalDir} (once; cached)`);
  const started = Date.now();
  await run('git', ['init', '-q', '--bare', '-b', 'main', gitDir], { timeoutMs: 30_000, env: cleanGitEnv() });
  const files = await fastImport(gitDir, sizeMb);
  log(`fast-import done in ${((Date.now() - started) / 1000).toFixed(1)} s; repacking`);
  await run('git', ['repack', '-adfq', '--window=10', '--depth=50'], { cwd: gitDir, timeoutMs: 3_600_000, env: cleanGitEnv() });
  const head = (await run('git', ['rev-parse', 'refs/heads/main'], { cwd: gitDir, timeoutMs: 30_000, env: cleanGitEnv() })).trim();
  let packBytes = 0;
  const packDir = path.join(gitDir, 'objects', 'pack');
  for (const name of await readdir(packDir)) packBytes += (await stat(path.join(packDir, name))).size;
  const info: BenchRepo = {
    gitDir: path.join(finalDir, 'bench.git'),
    sizeMb,
    files: files.size,
    treeBytes: [...files.values()].reduce((sum, f) => sum + f.content.length, 0),
    commits: 1 + VERSIONS,
    head,
    packBytes,
  };
  await writeFile(path.join(buildDir, 'info.json'), `${JSON.stringify(info, null, 2)}\n`);
  await rename(buildDir, finalDir);
  log(`repository ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${info.files} files, ${(info.treeBytes / MiB).toFixed(0)} MiB tree, ${(packBytes / MiB).toFixed(0)} MiB pack`);
  return info;
}

/** Streams all commits into `git fast-import`; returns the final tree (path → file). */
async function fastImport(gitDir: string, sizeMb: number): Promise<Map<string, FileState>> {
  const child = spawn('git', ['fast-import', '--quiet', '--done'], {
    cwd: gitDir,
    env: cleanGitEnv(),
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`git fast-import failed (${code}): ${stderr.trim()}`))));
  });
  // A failure while we are still writing must surface as that failure, not as a stuck drain.
  const failed = exited.then(() => {
    throw new Error(`git fast-import exited early: ${stderr.trim()}`);
  });
  failed.catch(() => {});
  child.stdin.on('error', () => {});
  const write = async (data: Buffer | string): Promise<void> => {
    if (!child.stdin.write(data)) await Promise.race([once(child.stdin, 'drain'), failed]);
  };

  try {
    const files = new Map<string, FileState>();
    const rng = new Rng(0xcac4e + sizeMb);
    const budget = sizeMb * 1_000_000;
    initialTree(rng, budget, files);
    await writeCommit(write, 1, 'initial import', [...files.entries()].map(([p, f]) => ({ path: p, file: f })), []);
    const textPaths = [...files.keys()].filter((p) => p.startsWith('packages/'));
    for (let n = 2; n <= 1 + VERSIONS; n++) {
      const { changed, deleted } = nextVersion(rng, files, textPaths, n);
      await writeCommit(write, n, `version ${n}: ${changed.length} files changed, ${deleted.length} removed`, changed, deleted);
    }
    await write('done\n');
    child.stdin.end();
    await exited;
    return files;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

function initialTree(rng: Rng, budget: number, files: Map<string, FileState>): void {
  const textBudget = budget * 0.75;
  let used = 0;
  for (let i = 0; used < textBudget; i++) {
    const file = textFile(rng);
    files.set(textPath(rng, i), file);
    used += file.content.length;
  }
  for (let i = 0; i < 10; i++) {
    const script = `#!/bin/sh\nset -eu\n${textContent(rng, rng.int(200, 3000)).toString('utf8').replace(/^/gm, '# ')}exit 0\n`;
    const content = Buffer.from(script);
    files.set(`scripts/tool-${i}.sh`, { mode: '100755', content });
    used += content.length;
  }
  for (let i = 0; used < budget; i++) {
    const size = rng.int(1 * MiB, 4 * MiB);
    files.set(`assets/blob-${i}.bin`, { mode: '100644', content: binaryContent(rng, size, i % 2 === 0 ? 8 : 4) });
    used += size;
  }
  files.set('docs/README.md', { mode: '100644', content: Buffer.from('# Synthetic benchmark repository\n\nGenerated by bench/repo.ts.\n') });
  files.set('docs/latest', { mode: '120000', content: Buffer.from('README.md') });
  files.set('tools', { mode: '120000', content: Buffer.from('scripts') });
}

function textFile(rng: Rng): FileState {
  // Mostly small files, some medium, a few large: roughly the spread of a real code base.
  const roll = rng.float();
  const size = roll < 0.8 ? rng.int(300, 6000) : roll < 0.98 ? rng.int(6000, 40_000) : rng.int(40_000, 200_000);
  return { mode: '100644', content: textContent(rng, size) };
}

/** The path of text file number `i`; `pkg` (default: by number, 60 files each) picks its package. */
function textPath(rng: Rng, i: number, pkg = Math.floor(i / 60)): string {
  const ext = rng.pick(['ts', 'ts', 'ts', 'tsx', 'js', 'md']);
  return `packages/pkg-${pkg}/src/${rng.pick(['core', 'util', 'api', 'model', 'io'])}/file-${i}.${ext}`;
}

/**
 * One version's worth of change to `files` (mutated in place): edits EDIT_SHARE of the text files,
 * adds a few, removes one, sometimes replaces a binary. `textPaths` is kept in step with `files`.
 */
function nextVersion(
  rng: Rng,
  files: Map<string, FileState>,
  textPaths: string[],
  n: number,
): { changed: Array<{ path: string; file: FileState }>; deleted: string[] } {
  const changed = new Map<string, FileState>();
  const edits = Math.max(1, Math.round(textPaths.length * EDIT_SHARE));
  for (let i = 0; i < edits; i++) {
    const p = rng.pick(textPaths);
    const old = changed.get(p) ?? files.get(p);
    if (old !== undefined) changed.set(p, { mode: old.mode, content: editText(rng, old.content, LINE_SHARE, 4) });
  }
  for (let i = rng.int(1, 5); i > 0; i--) {
    // New files land in existing packages, as they do in a real tree.
    const p = textPath(rng, 1000 * n + i, rng.int(0, 150));
    changed.set(p, textFile(rng));
    textPaths.push(p);
  }
  const deleted: string[] = [];
  const victimAt = rng.int(0, textPaths.length - 1);
  const victim = textPaths[victimAt];
  if (!changed.has(victim)) {
    deleted.push(victim);
    textPaths.splice(victimAt, 1);
  }
  if (n % BINARY_EVERY === 0) {
    const binaries = [...files.keys()].filter((p) => p.startsWith('assets/'));
    const replaced = rng.pick(binaries);
    const old = files.get(replaced);
    if (old !== undefined) changed.set(replaced, { mode: '100644', content: binaryContent(rng, old.content.length, 8) });
  }
  for (const [p, f] of changed) files.set(p, f);
  for (const p of deleted) files.delete(p);
  return { changed: [...changed.entries()].map(([p, f]) => ({ path: p, file: f })), deleted };
}

async function writeCommit(
  write: (data: Buffer | string) => Promise<void>,
  n: number,
  message: string,
  changed: Array<{ path: string; file: FileState }>,
  deleted: string[],
): Promise<void> {
  const when = `${EPOCH + n * 3600} +0000`;
  const msg = Buffer.from(`${message}\n`);
  let head = `commit refs/heads/main\nmark :${n}\n`;
  head += `author Bench Author <bench@example.com> ${when}\ncommitter Bench Author <bench@example.com> ${when}\n`;
  head += `data ${msg.length}\n${msg.toString('utf8')}`;
  if (n > 1) head += `from :${n - 1}\n`;
  await write(head);
  for (const p of deleted) await write(`D ${p}\n`);
  for (const { path: p, file } of changed) {
    await write(`M ${file.mode} inline ${p}\ndata ${file.content.length}\n`);
    await write(file.content);
    await write('\n');
  }
  await write('\n');
}
