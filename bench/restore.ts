/**
 * Section 4, restore: `restore()` (the `cachew git restore` library, default 8 × 16 MiB ranges) vs
 * `git clone` through the same cachewd (warm mirror, so upload-pack serves from local disk), and vs
 * the bare pipeline `curl | zstd -d | tar -x` on the immutable URL (the floor for any restore: it
 * does no hashing, no verification and no `git status`).
 */
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { extractTar } from '../src/client/archive.js';
import { restore } from '../src/client/restore.js';
import { cleanGitEnv } from '../src/git/command.js';
import type { ServedSnapshot } from './serving.js';
import { ratio, type Row } from './table.js';
import { Cleanup, fmtSeconds, log, median, run, shell, sq, tempDir, timed } from './util.js';

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
}

/** `zstd -d` of a local file piped into the client's own tar extractor (no network, no hashing). */
async function clientExtract(file: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const zstd = spawn('zstd', ['-d', '-q', '-c', file], { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = new Promise<number | null>((resolve, reject) => {
    zstd.on('error', reject);
    zstd.on('close', resolve);
  });
  try {
    await extractTar(zstd.stdout, dir);
  } finally {
    zstd.kill('SIGKILL');
  }
  const code = await exited;
  if (code !== 0 && code !== null) throw new Error(`zstd -d exited ${code}`);
}

async function headOf(dir: string): Promise<string> {
  return (await run('git', ['rev-parse', 'HEAD'], { cwd: dir, env: cleanGitEnv(), timeoutMs: 60_000 })).trim();
}

export async function benchRestore(target: RestoreTarget, runs: number, cleanup: Cleanup): Promise<Row[]> {
  const work = await tempDir(cleanup, 'restore');
  const times = { ours: [] as number[], clone: [] as number[], curl: [] as number[], jsTar: [] as number[], gnuTar: [] as number[] };
  // A local copy for the extraction-only comparison below.
  const local = path.join(work, 'snapshot.tar.zst');
  await shell(`curl -sfS -o ${sq(local)} ${sq(target.snapshot.url)}`, { timeoutMs: HOUR });
  const fetchExtract: number[] = [];
  const finishing: number[] = [];

  const methods: Array<{ name: keyof typeof times; go: (dir: string) => Promise<void> }> = [
    {
      name: 'ours',
      go: async (dir) => {
        const started = performance.now();
        let verifyAt: number | undefined;
        await restore({
          repoUrl: target.repoUrl,
          dir,
          serverUrl: target.serverUrl,
          onProgress: (p) => {
            if (p.phase !== 'download' && verifyAt === undefined) verifyAt = performance.now();
          },
        });
        // Split the time: streaming download + extraction vs the checks after it (bundle, git status).
        if (verifyAt !== undefined) {
          fetchExtract.push(verifyAt - started);
          finishing.push(performance.now() - verifyAt);
        }
      },
    },
    {
      name: 'clone',
      go: async (dir) => {
        await run('git', ['clone', '-q', target.proxyCloneUrl, dir], { env: cleanGitEnv(), timeoutMs: HOUR });
      },
    },
    {
      name: 'curl',
      go: async (dir) => {
        await shell(`mkdir -p ${sq(dir)} && curl -sfS ${sq(target.snapshot.url)} | zstd -d -q | tar -x -C ${sq(dir)}`, { timeoutMs: HOUR });
      },
    },
    // Extraction alone, from the local file: where restore's time goes if it is not the network.
    { name: 'jsTar', go: (dir) => clientExtract(local, dir) },
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
  fetchExtract.length = 0;
  finishing.length = 0;

  for (let i = 1; i <= runs; i++) {
    // Rotate the order each run so no method always goes first (cold) or last.
    const order = [...methods.slice(i % methods.length), ...methods.slice(0, i % methods.length)];
    for (const method of order) {
      const dir = path.join(work, `${method.name}-${i}`);
      const { ms } = await timed(() => method.go(dir));
      // Every method must produce the same commit, or its time means nothing.
      const head = await headOf(dir);
      if (head !== target.head) throw new Error(`${method.name} restored ${head}, expected ${target.head}`);
      times[method.name].push(ms);
      await rm(dir, { recursive: true, force: true });
    }
    log(
      `restore run ${i}/${runs}: ours ${fmtSeconds(times.ours[i - 1])}, git clone ${fmtSeconds(times.clone[i - 1])}, ` +
        `curl|zstd|tar ${fmtSeconds(times.curl[i - 1])}; local extract: client ${fmtSeconds(times.jsTar[i - 1])}, tar ${fmtSeconds(times.gnuTar[i - 1])}`,
    );
  }

  const ours = median(times.ours);
  const clone = median(times.clone);
  const curl = median(times.curl);
  return [
    {
      section: SECTION,
      metric: 'restore vs git clone through cachewd (speed-up)',
      ours: fmtSeconds(ours),
      baseline: `${fmtSeconds(clone)} (git clone, warm mirror)`,
      ratio: ratio(clone / ours, 1),
      aim: '≥ 5×',
      met: clone / ours >= 5,
      note: `ours split: download + extract ${fmtSeconds(median(fetchExtract))}, then bundle/verify ${fmtSeconds(median(finishing))} (medians)`,
    },
    {
      section: SECTION,
      metric: 'restore vs curl | zstd -d | tar -x (time ratio)',
      ours: fmtSeconds(ours),
      baseline: `${fmtSeconds(curl)} (bare pipeline)`,
      ratio: ratio(ours / curl),
      aim: '≤ 1.2×',
      met: ours / curl <= 1.2,
      note: 'restore also verifies the sha256 and runs git status; the pipeline does neither',
    },
    {
      section: SECTION,
      metric: 'extraction only, local file: client extractTar vs GNU tar',
      ours: fmtSeconds(median(times.jsTar)),
      baseline: `${fmtSeconds(median(times.gnuTar))} (zstd -d | tar -x)`,
      ratio: ratio(median(times.jsTar) / median(times.gnuTar)),
      aim: '',
      note: 'both decompress with the zstd CLI; the difference is the extractor',
    },
  ];
}
