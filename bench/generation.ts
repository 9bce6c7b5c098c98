/**
 * Section 1, snapshot generation: `generateSnapshot` on a mirror vs the naive pipeline a first
 * implementation would use (`git clone` of the mirror, then `tar -c . | zstd -3 -T0`).
 *
 * Phases are timed separately so the lead can see where the time goes: our deterministic pack
 * (`pack-objects --threads=1 --no-reuse-*`) alone, and the same pack-objects call with all threads
 * (not deterministic, so not an option as is, but it bounds what threading could buy). The baseline's
 * `git clone` of a local path hardlinks the mirror's objects: that is what a naive implementation gets
 * for free, so it is the strongest baseline, not a strawman.
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { generateSnapshot } from '../src/git/snapshot/archive.js';
import { writeDeterministicPack } from '../src/git/snapshot/deterministic-pack.js';
import type { BenchRepo } from './repo.js';
import { ratio, type Row } from './table.js';
import { Cleanup, fmtBytes, fmtSeconds, log, median, run, shell, sq, tempDir, timed } from './util.js';

const SECTION = 'generation';
const HOUR = 3_600_000;

/** pack-objects with our flags but a chosen thread count; returns ms. */
async function packWithThreads(gitDir: string, commit: string, outDir: string, threads: string): Promise<number> {
  await mkdir(outDir, { recursive: true });
  const { ms } = await timed(() =>
    run(
      'git',
      ['-c', 'pack.useBitmaps=false', 'pack-objects', '--revs', `--threads=${threads}`, '--no-reuse-delta', '--no-reuse-object', '--window=10', '--depth=50', '--delta-base-offset', '-q', path.join(outDir, 'pack')],
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
  const allThreadsPack: number[] = [];
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
        const { ms, value } = await timed(() => generateSnapshot(source, out));
        ours.push(ms);
        ourSize = value.size;
        digests.add(value.sha256);
        await rm(out, { force: true });
        const scratch = path.join(work, 'pack-ours');
        await mkdir(scratch, { recursive: true });
        ourPack.push((await timed(() => writeDeterministicPack(mirror, repo.head, scratch))).ms);
        await rm(scratch, { recursive: true, force: true });
        allThreadsPack.push(await packWithThreads(mirror, repo.head, path.join(work, 'pack-threads'), '0'));
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
    log(`generation run ${i}/${runs}: ours ${fmtSeconds(ours[ours.length - 1])} (pack ${fmtSeconds(ourPack[ourPack.length - 1])}), naive ${fmtSeconds(naive[naive.length - 1])}`);
  }

  const oursMs = median(ours);
  const naiveMs = median(naive);
  const packMs = median(ourPack);
  const restMs = oursMs - packMs;
  const timeRatio = oursMs / naiveMs;
  // Cross-check the archive is deterministic across runs while we are at it.
  const deterministic = digests.size === 1;
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
      metric: 'phase: pack (ours: pack-objects 1 thread, no reuse)',
      ours: fmtSeconds(packMs),
      baseline: `${fmtSeconds(median(naiveClone))} (git clone, hardlinks)`,
      ratio: `${((packMs / oursMs) * 100).toFixed(0)}% of ours`,
      aim: '',
    },
    {
      section: SECTION,
      metric: 'phase: tree + tar + zstd (ours = total − pack)',
      ours: fmtSeconds(restMs),
      baseline: `${fmtSeconds(median(naiveTar))} (tar | zstd -3 -T0)`,
      ratio: ratio(restMs / median(naiveTar)),
      aim: '',
    },
    {
      section: SECTION,
      metric: 'pack-objects: 1 thread vs all threads (same flags)',
      ours: fmtSeconds(packMs),
      baseline: `${fmtSeconds(median(allThreadsPack))} (--threads=0, not deterministic)`,
      ratio: ratio(packMs / median(allThreadsPack)),
      aim: '',
    },
  ];
}
