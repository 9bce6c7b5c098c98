/**
 * Section 1, continued: regeneration after one new upstream commit, the everyday case. The first
 * generation of the head (cold, with a pack cache directory) leaves the checkpoint pack in the cache;
 * then one small commit lands on top and its snapshot is generated again with that cache (warm: only
 * the increment since the checkpoint is packed), against the naive pipeline for the same commit.
 * The warm archive is also checked against a generation of the same commit without any cache: the
 * bytes must be identical (the checkpoint pack is a deterministic function of its commit).
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { generateSnapshot, type SnapshotSource } from '../src/git/snapshot/archive.js';
import { phaseLogger } from './phase-logger.js';
import { ratio, type Row } from './table.js';
import { fmtBytes, fmtSeconds, log, median, run, shell, sq, timed } from './util.js';

const SECTION = 'generation';
const HOUR = 3_600_000;

export interface RegenerationInput {
  /** The bench mirror (its main is moved to the new commit). */
  mirror: string;
  head: string;
  work: string;
  runs: number;
}

/** Adds one small commit on top of `head` in the bare `mirror` and moves main to it. */
async function addCommit(mirror: string, head: string, work: string): Promise<string> {
  const date = '1800000000 +0000';
  const env = cleanGitEnv({ GIT_INDEX_FILE: path.join(work, 'regeneration.index'), GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date });
  const git = (args: string[], input?: string): Promise<string> => run('git', args, { cwd: mirror, env, timeoutMs: 60_000, input });
  await git(['read-tree', head]);
  const blob = (await git(['hash-object', '-w', '--stdin'], '# Changelog\n\n- one more small commit\n')).trim();
  await git(['update-index', '--add', '--cacheinfo', `100644,${blob},docs/CHANGELOG.md`]);
  const tree = (await git(['write-tree'])).trim();
  const commit = (await git(['commit-tree', tree, '-p', head, '-m', 'one more small commit'])).trim();
  await git(['update-ref', 'refs/heads/main', commit, head]);
  await rm(path.join(work, 'regeneration.index'), { force: true });
  return commit;
}

export async function benchRegeneration(input: RegenerationInput): Promise<Row[]> {
  const { mirror, head, work, runs } = input;
  const packCacheDir = path.join(work, 'pack-cache');
  const base: Omit<SnapshotSource, 'commit'> = { gitDir: mirror, upstreamUrl: 'https://example.com/bench/repo.git', defaultBranch: 'main' };
  const out = path.join(work, 'regen.tar.zst');

  // Cold, filling the cache: what the first snapshot after a checkpoint costs.
  const cold = await timed(() => generateSnapshot({ ...base, commit: head }, out, { packCacheDir }));
  await rm(out, { force: true });
  const next = await addCommit(mirror, head, work);
  log(`regeneration: cold generation of the head with an empty pack cache ${fmtSeconds(cold.ms)}; new commit ${next}`);

  const warm: number[] = [];
  const warmPack: number[] = [];
  let incrementBytes = 0;
  let checkpointBytes = 0;
  let sinceCheckpoint = 0;
  const naive: number[] = [];
  const digests = new Set<string>();
  for (let i = 1; i <= runs; i++) {
    const steps: Array<() => Promise<void>> = [
      async () => {
        let packReady: number | undefined;
        const logger = phaseLogger((msg, ms, record) => {
          if (msg === 'snapshot pack ready') packReady = ms;
          if (msg === 'checkpoint packs ready') {
            incrementBytes = Number(record.incrementBytes);
            checkpointBytes = Number(record.checkpointBytes);
            sinceCheckpoint = Number(record.depth) - Number(record.checkpointDepth);
          }
        });
        const { ms, value } = await timed(() => generateSnapshot({ ...base, commit: next }, out, { packCacheDir, logger }));
        warm.push(ms);
        if (packReady !== undefined) warmPack.push(packReady);
        digests.add(value.sha256);
        await rm(out, { force: true });
      },
      async () => {
        const clone = path.join(work, 'regen-clone');
        const naiveOut = path.join(work, 'regen-naive.tar.zst');
        const cloneMs = (await timed(() => run('git', ['clone', '-q', mirror, clone], { env: cleanGitEnv(), timeoutMs: HOUR }))).ms;
        const tarMs = (await timed(() => shell(`tar -C ${sq(clone)} -cf - . | zstd -3 -T0 -q -o ${sq(naiveOut)}`, { timeoutMs: HOUR }))).ms;
        naive.push(cloneMs + tarMs);
        await rm(clone, { recursive: true, force: true });
        await rm(naiveOut, { force: true });
      },
    ];
    if (i % 2 === 0) steps.reverse();
    for (const step of steps) await step();
    log(`regeneration run ${i}/${runs}: ours (warm) ${fmtSeconds(warm[i - 1])}, naive ${fmtSeconds(naive[i - 1])}`);
  }

  // The key property on a real-sized repository: cached and uncached generation give the same bytes.
  const uncached = await generateSnapshot({ ...base, commit: next }, out);
  await rm(out, { force: true });
  const same = digests.size === 1 && digests.has(uncached.sha256);

  const warmMs = median(warm);
  const naiveMs = median(naive);
  return [
    {
      section: SECTION,
      metric: 'regeneration after one new commit (checkpoint cached)',
      ours: fmtSeconds(warmMs),
      baseline: `${fmtSeconds(naiveMs)} (clone + tar|zstd)`,
      ratio: ratio(warmMs / naiveMs),
      aim: '≤ 1.5×',
      met: warmMs / naiveMs <= 1.5,
      note: `${same ? 'same sha256 as an uncached generation' : 'DIFFERENT sha256 from an uncached generation'}; cold generation that filled the cache ${fmtSeconds(cold.ms)}`,
    },
    {
      section: SECTION,
      metric: 'regeneration phase: tree list + packs (increment only)',
      ours: fmtSeconds(median(warmPack)),
      baseline: '',
      ratio: `${((median(warmPack) / warmMs) * 100).toFixed(0)}% of ours`,
      aim: '',
      note: `increment pack ${fmtBytes(incrementBytes)} (the ${sinceCheckpoint} first-parent commits since the checkpoint), checkpoint pack ${fmtBytes(checkpointBytes)} (cached)`,
    },
  ];
}
