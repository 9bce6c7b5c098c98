/**
 * Section 1, snapshot generation: `generateSnapshot` on a mirror vs the naive pipeline a first
 * implementation would use (`git clone` of the mirror, then `tar -c . | zstd -3 -T0`).
 *
 * Phases are split inside the same run, from generateSnapshot's own debug log ("snapshot pack ready"
 * comes after the tree listing and the deterministic pack; the rest is tar + blob reads + zstd).
 * Separately, the pack-objects call is timed with one thread and with all threads, back to back (all
 * threads is not deterministic, so not an option as is, but it bounds what threading could buy), and
 * with one thread but reusing the mirror's deltas (bytes then follow how the mirror happens to be
 * packed, so not deterministic across replicas either: it shows what the delta search costs).
 *
 * Then regeneration after one new commit with the checkpoint pack cached (regeneration.ts).
 *
 * The baseline's `git clone` of a local path hardlinks the mirror's objects: that is what a naive
 * implementation gets for free, so it is the strongest baseline, not a strawman.
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { generateSnapshot } from '../src/git/snapshot/archive.js';
import { phaseLogger } from './phase-logger.js';
import { benchRegeneration } from './regeneration.js';
import type { BenchRepo } from './repo.js';
import { ratio, type Row } from './table.js';
import { Cleanup, fmtBytes, fmtSeconds, log, median, run, shell, sq, tempDir, timed } from './util.js';

const SECTION = 'generation';
const HOUR = 3_600_000;

/** pack-objects with our flags but a chosen thread count (and optionally reuse); returns ms. */
async function packWithThreads(gitDir: string, commit: string, outDir: string, threads: string, reuse = false): Promise<number> {
  await mkdir(outDir, { recursive: true });
  const noReuse = reuse ? [] : ['--no-reuse-delta', '--no-reuse-object'];
  const { ms } = await timed(() =>
    run(
      'git',
      ['-c', 'pack.useBitmaps=false', 'pack-objects', '--revs', `--threads=${threads}`, ...noReuse, '--window=10', '--depth=50', '--delta-base-offset', '-q', path.join(outDir, 'pack')],
      { cwd: gitDir, env: cleanGitEnv(), timeoutMs: HOUR, input: `${commit}\n` },
    ),
  );
  await rm(outDir, { recursive: true, force: true });
  return ms;
}


export async function benchGeneration(repo: BenchRepo, runs: number, cleanup: Cleanup): Promise<Row[]> {
  const work = await tempDir(cleanup, 'generation');
  const mirror = path.join(work, 'mirror.git');
  await run('git', ['clone', '--mirror', '-q', repo.gitDir, mirror], { env: cleanGitEnv(), timeoutMs: HOUR });
  const source = { gitDir: mirror, commit: repo.head, upstreamUrl: 'https://example.com/bench/repo.git', defaultBranch: 'main' };

  const ours: number[] = [];
  const ourPack: number[] = [];
  const oneThreadPack: number[] = [];
  const allThreadsPack: number[] = [];
  const reusePack: number[] = [];
  const naive: number[] = [];
  const naiveClone: number[] = [];
  const naiveTar: number[] = [];
  const digests = new Set<string>();
  let ourSize = 0;
  let naiveSize = 0;

  for (let i = 1; i <= runs; i++) {
    // Alternate the order so a burst of load from other processes does not always hit the same side.
    const steps: Array<() => Promise<void>> = [
      async () => {
        const out = path.join(work, 'ours.tar.zst');
        let packReady: number | undefined;
        const logger = phaseLogger((msg, ms) => {
          if (msg === 'snapshot pack ready') packReady = ms;
        });
        const { ms, value } = await timed(() => generateSnapshot(source, out, { logger }));
        ours.push(ms);
        if (packReady !== undefined) ourPack.push(packReady);
        ourSize = value.size;
        digests.add(value.sha256);
        await rm(out, { force: true });
        const pairs: Array<() => Promise<void>> = [
          async () => void oneThreadPack.push(await packWithThreads(mirror, repo.head, path.join(work, 'pack-1'), '1')),
          async () => void allThreadsPack.push(await packWithThreads(mirror, repo.head, path.join(work, 'pack-all'), '0')),
          async () => void reusePack.push(await packWithThreads(mirror, repo.head, path.join(work, 'pack-reuse'), '1', true)),
        ];
        if (i % 2 === 0) pairs.reverse();
        for (const pack of pairs) await pack();
      },
      async () => {
        const clone = path.join(work, 'clone');
        const out = path.join(work, 'naive.tar.zst');
        const cloneMs = (await timed(() => run('git', ['clone', '-q', mirror, clone], { env: cleanGitEnv(), timeoutMs: HOUR }))).ms;
        const tarMs = (await timed(() => shell(`tar -C ${sq(clone)} -cf - . | zstd -3 -T0 -q -o ${sq(out)}`, { timeoutMs: HOUR }))).ms;
        naiveClone.push(cloneMs);
        naiveTar.push(tarMs);
        naive.push(cloneMs + tarMs);
        naiveSize = (await stat(out)).size;
        await rm(clone, { recursive: true, force: true });
        await rm(out, { force: true });
      },
    ];
    if (i % 2 === 0) steps.reverse();
    for (const step of steps) await step();
    log(
      `generation run ${i}/${runs}: ours ${fmtSeconds(ours[i - 1])} (pack phase ${fmtSeconds(ourPack[i - 1] ?? Number.NaN)}), ` +
        `naive ${fmtSeconds(naive[i - 1])}; pack-objects 1 thread ${fmtSeconds(oneThreadPack[i - 1])}, all ${fmtSeconds(allThreadsPack[i - 1])}, reuse ${fmtSeconds(reusePack[i - 1])}`,
    );
  }

  const oursMs = median(ours);
  const naiveMs = median(naive);
  const packMs = median(ourPack);
  // Per-run differences, so the split adds up within each run even when the load varies.
  const restMs = median(ours.map((total, at) => total - (ourPack[at] ?? Number.NaN)));
  const timeRatio = oursMs / naiveMs;
  // Cross-check the archive is deterministic across runs while we are at it.
  const deterministic = digests.size === 1;
  // Last: it moves the mirror's main to a new commit.
  const regeneration = await benchRegeneration({ mirror, head: repo.head, work, runs });
  return [
    {
      section: SECTION,
      metric: 'snapshot generation time',
      ours: fmtSeconds(oursMs),
      baseline: `${fmtSeconds(naiveMs)} (clone + tar|zstd)`,
      ratio: ratio(timeRatio),
      aim: '≤ 1.5×',
      met: timeRatio <= 1.5,
      note: deterministic ? `same sha256 in all ${runs} runs` : `DIFFERENT sha256 across runs: ${[...digests].join(', ')}`,
    },
    {
      section: SECTION,
      metric: 'snapshot size',
      ours: fmtBytes(ourSize),
      baseline: fmtBytes(naiveSize),
      ratio: ratio(ourSize / naiveSize),
      aim: '',
    },
    {
      section: SECTION,
      metric: 'phase: tree list + pack (1 thread, no reuse)',
      ours: fmtSeconds(packMs),
      baseline: `${fmtSeconds(median(naiveClone))} (git clone, hardlinks)`,
      ratio: `${((packMs / oursMs) * 100).toFixed(0)}% of ours`,
      aim: '',
    },
    {
      section: SECTION,
      metric: 'phase: tar + blob reads + zstd (total − pack)',
      ours: fmtSeconds(restMs),
      baseline: `${fmtSeconds(median(naiveTar))} (tar | zstd -3 -T0)`,
      ratio: ratio(restMs / median(naiveTar)),
      aim: '',
    },
    {
      section: SECTION,
      metric: 'pack-objects alone: 1 thread vs all threads',
      ours: fmtSeconds(median(oneThreadPack)),
      baseline: `${fmtSeconds(median(allThreadsPack))} (--threads=0, not deterministic)`,
      ratio: ratio(median(oneThreadPack) / median(allThreadsPack)),
      aim: '',
    },
    {
      section: SECTION,
      metric: 'pack-objects alone: no reuse vs reusing the mirror\'s deltas (1 thread)',
      ours: fmtSeconds(median(oneThreadPack)),
      baseline: `${fmtSeconds(median(reusePack))} (reuse; bytes follow the mirror's packs)`,
      ratio: ratio(median(oneThreadPack) / median(reusePack)),
      aim: '',
    },
    ...regeneration,
  ];
}
