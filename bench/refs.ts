/**
 * Section "refs": what making a restored clone a clone costs (docs/restore.md, step 6). On a
 * repository with many tags and branches — BENCH_TAGS tags on a linear history (every other one
 * annotated; default 2000) and BENCH_BRANCHES side branches (default 50) — compare
 *   - `restore()` as users run it (snapshot, then one `git fetch` of every branch and tag from cachewd),
 *   - `restore({ bundle: false })`, the archive alone (what restore did before the ref sync),
 *   - `git clone` through the same cachewd (warm mirror).
 * The difference between the first two is the extra time; the pack that fetch added is the extra bytes.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { snapshotsApiPath } from '../src/protocol/routes.js';
import { compiledClient } from './compiled-client.js';
import { fetchText } from './http-get.js';
import { ratio, type Row } from './table.js';
import { Cleanup, envInt, fmtBytes, fmtSeconds, log, median, run, tempDir, timed } from './util.js';

const SECTION = 'refs';
const EPOCH = 1_700_000_000;
const TEN_MINUTES = 600_000;

export interface RefsTarget {
  serverUrl: string;
  /** The harness upstream's base URL and `{host}` name, and its repository root on disk. */
  upstreamUrl: string;
  upstreamHost: string;
  upstreamRoot: string;
}

/** Writes a `git fast-import` stream: the history, the tags and the side branches. */
function importStream(tags: number, branches: number): string {
  const parts: string[] = [];
  const data = (text: string): string => `data ${Buffer.byteLength(text)}\n${text}\n`;
  const files = Array.from({ length: 200 }, (_, i) => `M 644 inline src/f${i}.txt\n${data(`file ${i}\n`.repeat(20))}`).join('');
  for (let i = 1; i <= tags; i++) {
    parts.push(`commit refs/heads/main\nmark :${i}\ncommitter Bench <bench@example.com> ${EPOCH + i * 60} +0000\n${data(`commit ${i}`)}`);
    if (i > 1) parts.push(`from :${i - 1}\n`);
    parts.push(i === 1 ? files : `M 644 inline CHANGELOG\n${data(`release ${i}\n`)}`);
    parts.push('\n');
  }
  for (let i = 1; i <= tags; i++) {
    if (i % 2 === 0) parts.push(`tag v1.${i}\nfrom :${i}\ntagger Bench <bench@example.com> ${EPOCH + i * 60} +0000\n${data(`release 1.${i}`)}`);
    else parts.push(`reset refs/tags/l${i}\nfrom :${i}\n\n`);
  }
  const step = Math.max(1, Math.floor(tags / Math.max(1, branches)));
  for (let b = 1; b <= branches; b++) {
    parts.push(`commit refs/heads/branch-${b}\ncommitter Bench <bench@example.com> ${EPOCH + (tags + b) * 60} +0000\n${data(`branch ${b}`)}`);
    parts.push(`from :${Math.min(tags, b * step)}\nM 644 inline BRANCH\n${data(`branch ${b}\n`)}\n`);
  }
  return parts.join('');
}

async function buildRepo(gitDir: string, tags: number, branches: number): Promise<void> {
  const env = cleanGitEnv();
  await run('git', ['init', '-q', '--bare', '-b', 'main', gitDir], { env, timeoutMs: TEN_MINUTES });
  const child = spawn('git', ['fast-import', '--quiet'], { cwd: gitDir, env, stdio: ['pipe', 'ignore', 'inherit'] });
  child.stdin.on('error', () => undefined); // a dying fast-import reports through its exit code
  child.stdin.end(importStream(tags, branches));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`git fast-import exited ${code}`);
  await run('git', ['repack', '-adq'], { cwd: gitDir, env, timeoutMs: TEN_MINUTES });
}

/** Total size of the packs in a clone's object store. */
async function packBytes(dir: string): Promise<number> {
  const packDir = path.join(dir, '.git/objects/pack');
  let total = 0;
  for (const name of await readdir(packDir)) {
    if (name.endsWith('.pack')) total += (await stat(path.join(packDir, name))).size;
  }
  return total;
}

export async function benchRefs(target: RefsTarget, runs: number, cleanup: Cleanup): Promise<Row[]> {
  const tags = envInt('BENCH_TAGS', 2000);
  const branches = envInt('BENCH_BRANCHES', 50);
  const name = 'tags.git';
  await buildRepo(path.join(target.upstreamRoot, name), tags, branches);
  const api = `${target.serverUrl}${snapshotsApiPath(target.upstreamHost, name)}`;
  const made = await fetchText(api, 'POST', TEN_MINUTES);
  if (made.status !== 200) throw new Error(`POST ${api}: ${made.status} ${made.body.slice(0, 200)}`);

  const work = await tempDir(cleanup, 'refs');
  const repoUrl = `${target.upstreamUrl}/${name}`;
  const proxyUrl = `${target.serverUrl}/git/${target.upstreamHost}/${name}`;
  const times = { full: [] as number[], archive: [] as number[], clone: [] as number[] };
  const extraBytes: number[] = [];
  let refCount = 0;
  const methods: Array<{ key: keyof typeof times; go: (dir: string) => Promise<void> }> = [
    { key: 'full', go: async (dir) => void (await (await compiledClient()).restore({ repoUrl, dir, serverUrl: target.serverUrl })) },
    { key: 'archive', go: async (dir) => void (await (await compiledClient()).restore({ repoUrl, dir, serverUrl: target.serverUrl, bundle: false })) },
    { key: 'clone', go: async (dir) => void (await run('git', ['clone', '-q', proxyUrl, dir], { env: cleanGitEnv(), timeoutMs: TEN_MINUTES })) },
  ];
  for (let i = 0; i <= runs; i++) {
    const order = [...methods.slice(i % methods.length), ...methods.slice(0, i % methods.length)];
    const dirs: Partial<Record<keyof typeof times, string>> = {};
    for (const method of order) {
      const dir = path.join(work, `${method.key}-${i}`);
      const { ms } = await timed(() => method.go(dir));
      dirs[method.key] = dir;
      if (i > 0) times[method.key].push(ms); // round 0 warms the mirror, page cache and JIT
    }
    const refs = await run('git', ['for-each-ref', '--format=%(refname)'], { cwd: dirs.full, env: cleanGitEnv(), timeoutMs: TEN_MINUTES });
    refCount = refs.trim().split('\n').length;
    if (i > 0) extraBytes.push((await packBytes(dirs.full!)) - (await packBytes(dirs.archive!)));
    for (const dir of Object.values(dirs)) await run('rm', ['-rf', dir], { timeoutMs: TEN_MINUTES });
    if (i > 0) {
      log(`refs run ${i}/${runs}: restore ${fmtSeconds(times.full[i - 1])}, archive only ${fmtSeconds(times.archive[i - 1])}, git clone ${fmtSeconds(times.clone[i - 1])}`);
    }
  }
  const full = median(times.full);
  const archive = median(times.archive);
  const clone = median(times.clone);
  const shape = `${tags} tags (half annotated), ${branches + 1} branches; the restored clone has ${refCount} refs`;
  return [
    {
      section: SECTION,
      metric: 'restore (with branches and tags) vs archive only (--no-bundle)',
      ours: fmtSeconds(full),
      baseline: `${fmtSeconds(archive)} (archive only)`,
      ratio: ratio(full / archive),
      aim: '',
      note: `${shape}; the ref sync adds ${fmtSeconds(full - archive)} and a ${fmtBytes(median(extraBytes))} pack (medians)`,
    },
    {
      section: SECTION,
      metric: 'restore (with branches and tags) vs git clone through cachewd',
      ours: fmtSeconds(full),
      baseline: `${fmtSeconds(clone)} (git clone, warm mirror)`,
      ratio: ratio(clone / full, 1),
      aim: '',
      note: `same refs; a small repository, so this is the fixed cost of both, not the snapshot speed-up`,
    },
  ];
}
