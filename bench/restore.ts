/**
 * Section 4, restore. Every method ends with a checkout of the same commit in a fresh directory on
 * tmpfs (/dev/shm when present), so the disk's noise is out and only the methods differ:
 *
 *   restore      `restore()` (the `cachew git restore` library, compiled as users run it; default
 *                8 × 8 MiB ranges)
 *   clone        `git clone` through the same cachewd (warm mirror: upload-pack from local disk)
 *   bare         `curl <immutable URL> | zstd -d | tar -x`: the method's limit (no hashing, no
 *                verification, no `git status`)
 *
 * each on loopback and again through a throttled link (a proxy process capping every connection at
 * BENCH_LINK_MBPS, default 50 MB/s, with BENCH_LINK_LATENCY_MS, default 10 ms, each way), plus
 * restore with a single range on that link (do parallel ranges help?) and extraction alone from a
 * local file (our extractor vs `zstd -d | tar -x`). Times are medians; MB/s is the working tree's
 * size over the time, the same yardstick for every method.
 */
import { createReadStream } from 'node:fs';
import { access, mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { compiledClient } from './compiled-client.js';
import { startLink } from './link.js';
import type { ServedSnapshot } from './serving.js';
import { ratio, type Row } from './table.js';
import { Cleanup, MiB, envInt, fmtSeconds, log, median, run, shell, sq, timed } from './util.js';

const SECTION = 'restore';
const HOUR = 3_600_000;

export interface RestoreTarget {
  /** cachewd base URL. */
  serverUrl: string;
  /** The upstream URL of the repository (what a user passes to `cachew git restore`). */
  repoUrl: string;
  /** The same repository through cachewd, for `git clone`. */
  proxyCloneUrl: string;
  /** The commit every method must end up at. */
  head: string;
  snapshot: ServedSnapshot;
  /** Bytes of the working tree: the yardstick for MB/s. */
  treeBytes: number;
}

type MethodName = 'cli' | 'restore' | 'clone' | 'bare' | 'linkCli' | 'linkRestore' | 'linkRestore1' | 'linkClone' | 'linkBare' | 'extract' | 'gnuTar';

interface Method {
  name: MethodName;
  go: (dir: string) => Promise<void>;
}

/** A directory on tmpfs when the machine has one (removed by `cleanup`), else under os.tmpdir(). */
async function tmpfsDir(cleanup: Cleanup, prefix: string): Promise<{ dir: string; tmpfs: boolean }> {
  const tmpfs = await access('/dev/shm', 2).then(
    () => true,
    () => false,
  );
  const dir = await mkdtemp(path.join(tmpfs ? '/dev/shm' : os.tmpdir(), `cachew-bench-${prefix}-`));
  cleanup.add(`temp dir ${dir}`, () => rm(dir, { recursive: true, force: true }));
  return { dir, tmpfs };
}

/** The client's extraction of a local file: libzstd into the extraction thread (no network, no hashing). */
async function clientExtract(file: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await (await compiledClient()).extractZstd(createReadStream(file, { highWaterMark: 1024 * 1024 }), dir);
}

async function headOf(dir: string): Promise<string> {
  return (await run('git', ['rev-parse', 'HEAD'], { cwd: dir, env: cleanGitEnv(), timeoutMs: 60_000 })).trim();
}

/** The same URL with its origin replaced (requests then go through the link). */
function via(url: string, origin: string): string {
  const moved = new URL(url);
  const to = new URL(origin);
  moved.protocol = to.protocol;
  moved.host = to.host;
  return moved.toString();
}

export async function benchRestore(target: RestoreTarget, runs: number, cleanup: Cleanup): Promise<Row[]> {
  const { dir: work, tmpfs } = await tmpfsDir(cleanup, 'restore');
  const linkMbps = envInt('BENCH_LINK_MBPS', 50);
  const linkLatencyMs = Number(process.env.BENCH_LINK_LATENCY_MS ?? 10);
  const link = await startLink(target.serverUrl, linkMbps * 1_000_000, linkLatencyMs, cleanup);
  const local = path.join(work, 'snapshot.tar.zst');
  await shell(`curl -sfS -o ${sq(local)} ${sq(target.snapshot.url)}`, { timeoutMs: HOUR });

  const times = new Map<MethodName, number[]>();
  const split = { fetchExtract: [] as number[], finishing: [] as number[] };
  const restoreVia = (serverUrl: string, concurrency?: number, measureSplit = false) => async (dir: string) => {
    const started = performance.now();
    let verifyAt: number | undefined;
    await (await compiledClient()).restore({
      repoUrl: target.repoUrl,
      dir,
      serverUrl,
      concurrency,
      onProgress: (p) => {
        if (p.phase !== 'download' && verifyAt === undefined) verifyAt = performance.now();
      },
    });
    // Split the time: streaming download + extraction vs the checks after it (bundle, git status).
    if (measureSplit && verifyAt !== undefined) {
      split.fetchExtract.push(verifyAt - started);
      split.finishing.push(performance.now() - verifyAt);
    }
  };
  // What users run: `cachew git restore` as its own process (Node's start and module loading included).
  const cliVia = (serverUrl: string) => async (dir: string) => {
    const { cliPath } = await compiledClient();
    await run(process.execPath, [cliPath, 'git', 'restore', target.repoUrl, dir, '--url', serverUrl], { env: cleanGitEnv(), timeoutMs: HOUR });
  };
  const clone = (url: string) => async (dir: string) => {
    await run('git', ['clone', '-q', url, dir], { env: cleanGitEnv(), timeoutMs: HOUR });
  };
  const bare = (url: string) => async (dir: string) => {
    await shell(`mkdir -p ${sq(dir)} && curl -sfS ${sq(url)} | zstd -d -q | tar -x -C ${sq(dir)}`, { timeoutMs: HOUR });
  };
  const methods: Method[] = [
    { name: 'cli', go: cliVia(target.serverUrl) },
    { name: 'restore', go: restoreVia(target.serverUrl, undefined, true) },
    { name: 'clone', go: clone(target.proxyCloneUrl) },
    { name: 'bare', go: bare(target.snapshot.url) },
    { name: 'linkCli', go: cliVia(link.url) },
    { name: 'linkRestore', go: restoreVia(link.url) },
    { name: 'linkRestore1', go: restoreVia(link.url, 1) },
    { name: 'linkClone', go: clone(via(target.proxyCloneUrl, link.url)) },
    { name: 'linkBare', go: bare(via(target.snapshot.url, link.url)) },
    { name: 'extract', go: (dir) => clientExtract(local, dir) },
    {
      name: 'gnuTar',
      go: async (dir) => {
        await shell(`mkdir -p ${sq(dir)} && zstd -d -q -c ${sq(local)} | tar -x -C ${sq(dir)}`, { timeoutMs: HOUR });
      },
    },
  ];

  // One unmeasured round: JIT, page cache and connection setup are not what we compare.
  for (const method of methods) {
    const dir = path.join(work, `warmup-${method.name}`);
    await method.go(dir);
    await rm(dir, { recursive: true, force: true });
  }
  split.fetchExtract.length = 0;
  split.finishing.length = 0;

  for (let i = 1; i <= runs; i++) {
    // Rotate the order each run so no method always goes first or last.
    const order = [...methods.slice(i % methods.length), ...methods.slice(0, i % methods.length)];
    for (const method of order) {
      const dir = path.join(work, `${method.name}-${i}`);
      const { ms } = await timed(() => method.go(dir));
      // Every method must produce the same commit, or its time means nothing.
      const head = await headOf(dir);
      if (head !== target.head) throw new Error(`${method.name} restored ${head}, expected ${target.head}`);
      times.set(method.name, [...(times.get(method.name) ?? []), ms]);
      await rm(dir, { recursive: true, force: true });
    }
    log(`restore run ${i}/${runs}: ${methods.map((m) => `${m.name} ${fmtSeconds(times.get(m.name)!.at(-1)!)}`).join(', ')}`);
  }
  await link.stop();

  const t = (name: MethodName): number => median(times.get(name) ?? []);
  const show = (name: MethodName, what: string): string => `${fmtSeconds(t(name))}, ${mbps(target.treeBytes, t(name))} (${what})`;
  const where = tmpfs ? 'tmpfs' : `${os.tmpdir()} (no /dev/shm)`;
  const linkName = `${linkMbps} MB/s per connection, +${linkLatencyMs} ms each way`;
  return [
    {
      section: SECTION,
      metric: `cachew git restore vs curl | zstd -d | tar -x, loopback, target on ${where} (time ratio)`,
      ours: show('cli', 'cachew git restore'),
      baseline: show('bare', 'bare pipeline'),
      ratio: ratio(t('cli') / t('bare')),
      aim: '≤ 1.2×',
      met: t('cli') / t('bare') <= 1.2,
      note:
        `the command as users run it: Node's start and module loading included; restore also verifies the sha256 and runs git status, ` +
        `the pipeline does neither`,
    },
    {
      section: SECTION,
      metric: `restore() in-process (library call, no process start) vs the same pipeline (time ratio)`,
      ours: show('restore', 'restore()'),
      baseline: show('bare', 'bare pipeline'),
      ratio: ratio(t('restore') / t('bare')),
      aim: '',
      note:
        `inside the benchmark's own process. Split: download + extract ` +
        `${fmtSeconds(median(split.fetchExtract))}, then bundle/refs/verify ${fmtSeconds(median(split.finishing))} (medians)`,
    },
    {
      section: SECTION,
      metric: 'cachew git restore vs git clone through warm cachewd, loopback (speed-up)',
      ours: show('cli', 'cachew git restore'),
      baseline: show('clone', 'git clone'),
      ratio: ratio(t('clone') / t('cli'), 1),
      aim: '',
    },
    {
      section: SECTION,
      metric: `cachew git restore vs git clone through a link of ${linkName} (speed-up)`,
      ours: show('linkCli', 'cachew git restore, 8 ranges'),
      baseline: show('linkClone', 'git clone'),
      ratio: ratio(t('linkClone') / t('linkCli'), 1),
      aim: '≥ 5×',
      met: t('linkClone') / t('linkCli') >= 5,
    },
    {
      section: SECTION,
      metric: `same link: restore() in-process vs git clone (speed-up)`,
      ours: show('linkRestore', 'restore(), 8 ranges'),
      baseline: show('linkClone', 'git clone'),
      ratio: ratio(t('linkClone') / t('linkRestore'), 1),
      aim: '',
    },
    {
      section: SECTION,
      metric: 'same link: 8 parallel ranges vs 1 (speed-up)',
      ours: show('linkRestore', 'restore, 8 ranges'),
      baseline: show('linkRestore1', 'restore, 1 range'),
      ratio: ratio(t('linkRestore1') / t('linkRestore'), 1),
      aim: '> 1×',
      met: t('linkRestore1') / t('linkRestore') > 1,
    },
    {
      section: SECTION,
      metric: 'same link: restore vs curl | zstd -d | tar -x (one stream; time ratio)',
      ours: show('linkRestore', 'restore, 8 ranges'),
      baseline: show('linkBare', 'bare pipeline'),
      ratio: ratio(t('linkRestore') / t('linkBare')),
      aim: '',
    },
    {
      section: SECTION,
      metric: 'extraction only, local file: client extractor vs GNU tar (time ratio)',
      ours: show('extract', 'libzstd → our filter + writer thread'),
      baseline: show('gnuTar', 'zstd -d | tar -x'),
      ratio: ratio(t('extract') / t('gnuTar')),
      aim: '',
      note: 'ours: libzstd in-process into the extraction thread, which checks every header and writes with synchronous calls; GNU tar: the zstd CLI piped into tar',
    },
  ];
}

function mbps(bytes: number, ms: number): string {
  return `${(bytes / MiB / (ms / 1000)).toFixed(0)} MiB/s`;
}
