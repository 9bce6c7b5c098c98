/**
 * Section 1, snapshot generation: the first snapshot of a repository, both sides fetching from
 * upstream (a `file://` URL, so git's transport runs): ours is `git clone --mirror` + generateSnapshot
 * with an empty layer cache; the naive pipeline is `git clone --mirror` + `git clone` + `tar -c . |
 * zstd -3 -T0`. The naive `git clone` of a local mirror hardlinks its objects: what a naive
 * implementation gets for free, so it is the strongest baseline, not a strawman.
 *
 * Phases are split inside the same run: the clone timed alone, then generateSnapshot's own debug log
 * ("snapshot pack ready" comes after the tree listing and the layer packs; "snapshot archive written"
 * after tar + blob reads + zstd frames).
 * Then the layer rule against one pack (layer-rules.ts), regeneration (regeneration.ts) and the
 * memory of generating a tree with a 1 GiB file (generation-memory.ts).
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { generateSnapshot, type SnapshotResult } from '../src/git/snapshot/archive.js';
import { benchGenerationMemory } from './generation-memory.js';
import { benchLayerRules } from './layer-rules.js';
import { phaseLogger } from './phase-logger.js';
import { benchRegeneration, naivePipeline } from './regeneration.js';
import type { BenchRepo } from './repo.js';
import { ratio, type Row } from './table.js';
import { Cleanup, envInt, fmtBytes, fmtSeconds, log, median, run, tempDir, timed } from './util.js';

const SECTION = 'generation';
const HOUR = 3_600_000;

/** The row groups of this section, selectable with BENCH_GENERATION_ROWS (comma list; default all). */
const ROW_GROUPS = ['cold', 'rules', 'regeneration', 'memory'] as const;
type RowGroup = (typeof ROW_GROUPS)[number];

function selectedGroups(): Set<RowGroup> {
  const named = (process.env.BENCH_GENERATION_ROWS ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = named.filter((n) => !(ROW_GROUPS as readonly string[]).includes(n));
  if (unknown.length > 0) throw new Error(`BENCH_GENERATION_ROWS: unknown ${unknown.join(', ')} (known: ${ROW_GROUPS.join(', ')})`);
  return new Set(named.length === 0 ? ROW_GROUPS : (named as RowGroup[]));
}

export async function benchGeneration(repo: BenchRepo, runs: number, cleanup: Cleanup): Promise<Row[]> {
  const groups = selectedGroups();
  const work = await tempDir(cleanup, 'generation');
  const rows: Row[] = [];
  if (groups.has('cold')) rows.push(...(await coldRows(repo, runs, work)));
  if (groups.has('rules') || groups.has('regeneration')) {
    const mirror = path.join(work, 'mirror.git');
    await rm(mirror, { recursive: true, force: true });
    await run('git', ['clone', '--mirror', '-q', repo.gitDir, mirror], { env: cleanGitEnv(), timeoutMs: HOUR });
    const mainline = (await run('git', ['rev-list', '--first-parent', '--reverse', repo.head], { cwd: mirror, env: cleanGitEnv(), timeoutMs: HOUR })).trim().split('\n');
    if (groups.has('rules')) rows.push(...(await benchLayerRules(mirror, mainline, work)));
    if (groups.has('regeneration')) rows.push(...(await benchRegeneration({ mirror, mainline, work, runs })));
    await rm(mirror, { recursive: true, force: true });
  }
  if (groups.has('memory')) rows.push(...(await benchGenerationMemory(work, envInt('BENCH_BIG_FILE_MB', 1024))));
  return rows;
}

/** The first snapshot against the naive pipeline, its pack phase and the snapshot size. */
async function coldRows(repo: BenchRepo, runs: number, work: string): Promise<Row[]> {
  const upstream = `file://${repo.gitDir}`;
  const mirror = path.join(work, 'mirror.git');
  const source = { gitDir: mirror, commit: repo.head, upstreamUrl: 'https://example.com/bench/repo.git', defaultBranch: 'main' };

  const ours: number[] = [];
  const ourClone: number[] = [];
  const ourPack: number[] = [];
  const ourArchive: number[] = [];
  const naive: number[] = [];
  const digests = new Set<string>();
  let snapshot: SnapshotResult | undefined;
  let naiveSize = 0;
  for (let i = 1; i <= runs; i++) {
    // Alternate the order so a burst of load from other processes does not always hit the same side.
    const steps: Array<() => Promise<void>> = [
      async () => {
        await rm(mirror, { recursive: true, force: true });
        const out = path.join(work, 'ours.tar.zst');
        const layerCacheDir = path.join(work, `layers-${i}`);
        // generateSnapshot's log times its phases from its own start.
        let packReady: number | undefined;
        let written: number | undefined;
        const logger = phaseLogger((msg, ms) => {
          if (msg === 'snapshot pack ready') packReady = ms;
          if (msg === 'snapshot archive written') written = ms;
        });
        let cloneMs = 0;
        const { ms, value } = await timed(async () => {
          cloneMs = (await timed(() => run('git', ['clone', '--mirror', '-q', upstream, mirror], { env: cleanGitEnv(), timeoutMs: HOUR }))).ms;
          return generateSnapshot(source, out, { logger, layerCacheDir });
        });
        ours.push(ms);
        ourClone.push(cloneMs);
        if (packReady !== undefined) ourPack.push(packReady);
        if (packReady !== undefined && written !== undefined) ourArchive.push(written - packReady);
        snapshot = value;
        digests.add(value.sha256);
        await rm(out, { force: true });
        await rm(layerCacheDir, { recursive: true, force: true });
      },
      async () => {
        const naiveMirror = path.join(work, 'naive-mirror.git');
        const { ms, value } = await timed(async () => {
          await run('git', ['clone', '--mirror', '-q', upstream, naiveMirror], { env: cleanGitEnv(), timeoutMs: HOUR });
          return naivePipeline(naiveMirror, work);
        });
        naive.push(ms);
        naiveSize = value.size;
        await rm(naiveMirror, { recursive: true, force: true });
      },
    ];
    if (i % 2 === 0) steps.reverse();
    for (const step of steps) await step();
    log(`generation run ${i}/${runs}: ours ${fmtSeconds(ours[i - 1])} (pack phase ${fmtSeconds(ourPack[i - 1] ?? Number.NaN)}), naive ${fmtSeconds(naive[i - 1])}`);
  }
  // The second state directory: an independent mirror (another transport, repacked), no cache.
  const second = path.join(work, 'second.git');
  await run('git', ['clone', '--mirror', '-q', '--no-local', repo.gitDir, second], { env: cleanGitEnv(), timeoutMs: HOUR });
  await run('git', ['repack', '-adq', '--window=5', '--depth=10'], { cwd: second, env: cleanGitEnv(), timeoutMs: HOUR });
  const reference = await generateSnapshot({ ...source, gitDir: second }, path.join(work, 'second.tar.zst'));
  await rm(path.join(work, 'second.tar.zst'), { force: true });
  await rm(second, { recursive: true, force: true });
  const deterministic = digests.size === 1 && digests.has(reference.sha256);

  const oursMs = median(ours);
  const naiveMs = median(naive);
  const size = snapshot?.size ?? 0;
  await rm(mirror, { recursive: true, force: true });
  const phase = (metric: string, values: number[]): Row => ({
    section: SECTION,
    metric,
    ours: fmtSeconds(median(values)),
    baseline: '',
    ratio: `${((median(values) / oursMs) * 100).toFixed(0)}% of ours`,
    aim: '',
  });
  return [
    {
      section: SECTION,
      metric: `first snapshot of the repository (depth ${repo.commits}, both clone from upstream)`,
      ours: fmtSeconds(oursMs),
      baseline: `${fmtSeconds(naiveMs)} (clone --mirror + clone + tar|zstd)`,
      ratio: ratio(oursMs / naiveMs),
      aim: '≤ 1.5×',
      met: oursMs / naiveMs <= 1.5,
      note: deterministic ? `same sha256 in all ${runs} runs and on an independent mirror` : `DIFFERENT sha256: ${[...digests, reference.sha256].join(', ')}`,
    },
    phase('phase: clone --mirror (as the naive side)', ourClone),
    phase('phase: tree list + layer packs (all cores)', ourPack),
    phase('phase: archive (tar, blob reads, zstd frames)', ourArchive),
    {
      section: SECTION,
      metric: 'snapshot size',
      ours: fmtBytes(size),
      baseline: fmtBytes(naiveSize),
      ratio: ratio(size / naiveSize),
      aim: '≤ 1.1×',
      met: size / naiveSize <= 1.1,
      note: `${snapshot?.frames.length ?? 0} zstd frames`,
    },
  ];
}
