/**
 * Section 1, continued: regeneration, the everyday case, on one mirror with one layer cache that lives
 * through the scenario the way a replica's does (docs/snapshots.md, "Layered packs"):
 *
 *   right after a boundary   the snapshot at depth 2^k (+ the background preparation it triggers),
 *                            then the next commit, whose snapshot needs the merged layer (0, 2^k];
 *   64 commits after         then the snapshot 64 first-parent commits later;
 *   one commit after         then the next commit;
 *   short history            a repository of < 64 first-parent commits, one commit after the previous.
 *
 * Each timed generation is compared with the naive pipeline for the same commit (`git clone` of a
 * mirror holding exactly that commit's history, then `tar | zstd -3 -T0`), and its sha256 with a cold
 * generation of the same commit on an independent mirror with no cache (a second state directory).
 * The preparation after each snapshot (prepareNextLayers, what the service runs in the background) is
 * timed separately: it is off the path of the next request but it is CPU the replica spends.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { generateSnapshot, type SnapshotResult, type SnapshotSource } from '../src/git/snapshot/archive.js';
import { prepareNextLayers } from '../src/git/snapshot/layer-packs.js';
import { ratio, type Row } from './table.js';
import { fmtBytes, fmtSeconds, log, median, run, shell, sq, timed } from './util.js';

const SECTION = 'generation';
const HOUR = 3_600_000;
const URL = 'https://example.com/bench/repo.git';

export interface RegenerationInput {
  /** A mirror of the bench repository. */
  mirror: string;
  /** main's first-parent chain of the bench repository, oldest first. */
  mainline: string[];
  work: string;
  runs: number;
}

/** One timed scenario step. */
interface Step {
  metric: string;
  commit: string;
  /** Regeneration goal (ratio to naive), or undefined for an informational row. */
  aim?: number;
}

export async function benchRegeneration(input: RegenerationInput): Promise<Row[]> {
  const { mirror, mainline, work, runs } = input;
  const layerCacheDir = path.join(work, 'layer-cache');
  const base: Omit<SnapshotSource, 'commit'> = { gitDir: mirror, upstreamUrl: URL, defaultBranch: 'main' };
  const rows: Row[] = [];
  let outputs = 0;
  const generate = async (commit: string, cache?: string, gitDir = mirror): Promise<SnapshotResult> => {
    const out = path.join(work, `regen-${outputs++}.tar.zst`);
    try {
      return await generateSnapshot({ ...base, gitDir, commit }, out, { layerCacheDir: cache });
    } finally {
      await rm(out, { force: true });
    }
  };
  const prepare = async (commit: string): Promise<number> => {
    const scratch = path.join(work, `prepare-${outputs++}`);
    await mkdir(scratch);
    try {
      return (await timed(() => prepareNextLayers(mirror, commit, scratch, { layerCacheDir }))).ms;
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  };

  const boundary = 1 << Math.floor(Math.log2(mainline.length - 66));
  const at = (depth: number): string => mainline[depth - 1];
  // The state a replica has after snapshotting depth `boundary` (not timed here).
  await generate(at(boundary), layerCacheDir);
  const prepareBoundary = await prepare(at(boundary));
  log(`regeneration: snapshot of depth ${boundary} made; preparing the next commit's layers took ${fmtSeconds(prepareBoundary)}`);
  const steps: Step[] = [
    { metric: `regeneration, one commit right after a boundary (depth ${boundary} → ${boundary + 1})`, commit: at(boundary + 1), aim: 1.2 },
    { metric: `regeneration, 64 commits after (depth ${boundary + 1} → ${boundary + 65})`, commit: at(boundary + 65) },
    { metric: `regeneration, one commit after (depth ${boundary + 65} → ${boundary + 66})`, commit: at(boundary + 66), aim: 1.2 },
  ];
  const previous: Array<SnapshotResult | undefined> = [];
  for (const step of steps) {
    const result = await timedStep(step, runs, () => generate(step.commit, layerCacheDir), (cold) => generate(step.commit, undefined, cold), mirror, work);
    rows.push(result.row);
    previous.push(result.snapshot);
    const prepared = await prepare(step.commit);
    log(`regeneration: prepared after ${step.commit.slice(0, 12)} in ${fmtSeconds(prepared)}`);
  }
  rows.push({
    section: SECTION,
    metric: `background preparation after the depth-${boundary} snapshot (merges the layer (0, ${boundary}])`,
    ours: fmtSeconds(prepareBoundary),
    baseline: '',
    ratio: '',
    aim: '',
    note: 'off the request path; what makes the next row cheap',
  });
  const [afterBoundary, sixtyFour, oneAfter] = previous;
  if (sixtyFour !== undefined && oneAfter !== undefined) {
    rows.push(await sharedFramesRow(`shared frames, depth ${boundary + 65} → ${boundary + 66}`, sixtyFour, oneAfter));
  }
  if (afterBoundary !== undefined) rows.push(await sharedFramesRow(`shared frames, depth ${boundary} → ${boundary + 1} (across a merge)`, await generate(at(boundary), layerCacheDir), afterBoundary));

  // Short history: a repository with < 64 first-parent commits, one commit after the previous one.
  const short = path.join(work, 'short.git');
  await run('git', ['init', '-q', '--bare', '-b', 'main', short], { env: cleanGitEnv(), timeoutMs: HOUR });
  await run('git', ['fetch', '-q', mirror, `${at(40)}:refs/heads/main`], { cwd: short, env: cleanGitEnv(), timeoutMs: HOUR });
  const shortCache = path.join(work, 'short-cache');
  await generate(at(39), shortCache, short);
  const shortScratch = path.join(work, 'short-prepare');
  await mkdir(shortScratch);
  await prepareNextLayers(short, at(39), shortScratch, { layerCacheDir: shortCache });
  const shortStep: Step = { metric: 'regeneration, short history (depth 39 → 40)', commit: at(40), aim: 1.2 };
  rows.push((await timedStep(shortStep, runs, () => generate(at(40), shortCache, short), (cold) => generate(at(40), undefined, cold), short, work)).row);
  return rows;
}

/** Times ours against the naive pipeline `runs` times and checks the sha256 against a cold, cacheless run elsewhere. */
async function timedStep(
  step: Step,
  runs: number,
  ours: () => Promise<SnapshotResult>,
  cold: (gitDir: string) => Promise<SnapshotResult>,
  mirror: string,
  work: string,
): Promise<{ row: Row; snapshot: SnapshotResult | undefined }> {
  const naiveRepo = path.join(work, 'naive-source.git');
  await rm(naiveRepo, { recursive: true, force: true });
  // A mirror holding exactly this commit's history: what a naive replica would clone from.
  await run('git', ['init', '-q', '--bare', '-b', 'main', naiveRepo], { env: cleanGitEnv(), timeoutMs: HOUR });
  await run('git', ['fetch', '-q', mirror, `${step.commit}:refs/heads/main`], { cwd: naiveRepo, env: cleanGitEnv(), timeoutMs: HOUR });
  const oursMs: number[] = [];
  const naiveMs: number[] = [];
  const digests = new Set<string>();
  let snapshot: SnapshotResult | undefined;
  let naiveSize = 0;
  for (let i = 1; i <= runs; i++) {
    const { ms, value } = await timed(ours);
    oursMs.push(ms);
    digests.add(value.sha256);
    snapshot = value;
    const naive = await naivePipeline(naiveRepo, work);
    naiveMs.push(naive.ms);
    naiveSize = naive.size;
    log(`${step.metric}: run ${i}/${runs} ours ${fmtSeconds(ms)}, naive ${fmtSeconds(naive.ms)}`);
  }
  // The second state directory: an independent mirror, no layer cache, cold.
  const reference = await cold(naiveRepo);
  await rm(naiveRepo, { recursive: true, force: true });
  const same = digests.size === 1 && digests.has(reference.sha256);
  const r = median(oursMs) / median(naiveMs);
  return {
    snapshot,
    row: {
      section: SECTION,
      metric: step.metric,
      ours: fmtSeconds(median(oursMs)),
      baseline: `${fmtSeconds(median(naiveMs))} (clone + tar|zstd)`,
      ratio: ratio(r),
      aim: step.aim === undefined ? '' : `≤ ${step.aim}×`,
      met: step.aim === undefined ? undefined : r <= step.aim,
      note: `${same ? 'same sha256 as a cold generation on an independent mirror' : 'DIFFERENT sha256 from a cold generation on an independent mirror'}; size ${fmtBytes(snapshot?.size ?? 0)} vs naive ${fmtBytes(naiveSize)}`,
    },
  };
}

/** Share of `next`'s compressed bytes that are frames byte-identical to frames of `previous`. */
async function sharedFramesRow(metric: string, previous: SnapshotResult, next: SnapshotResult): Promise<Row> {
  const known = new Set(previous.frames.map((f) => f.sha256));
  const shared = next.frames.filter((f) => known.has(f.sha256)).reduce((n, f) => n + f.length, 0);
  const total = next.frames.reduce((n, f) => n + f.length, 0);
  const share = shared / total;
  return {
    section: SECTION,
    metric,
    ours: `${(share * 100).toFixed(1)}%`,
    baseline: '',
    ratio: '',
    aim: '≥ 90%',
    met: share >= 0.9,
    note: `${fmtBytes(total - shared)} of ${fmtBytes(total)} in new frames; ${next.frames.length} frames`,
  };
}

/** `git clone` of `source`, then `tar | zstd -3 -T0`: time and archive size. */
export async function naivePipeline(source: string, work: string): Promise<{ ms: number; size: number }> {
  const clone = path.join(work, 'naive-clone');
  const out = path.join(work, 'naive.tar.zst');
  try {
    const { ms } = await timed(async () => {
      await run('git', ['clone', '-q', source, clone], { env: cleanGitEnv(), timeoutMs: HOUR });
      await shell(`tar -C ${sq(clone)} -cf - . | zstd -3 -T0 -q -o ${sq(out)}`, { timeoutMs: HOUR });
    });
    const size = Number((await shell(`stat -c %s ${sq(out)}`, { timeoutMs: 60_000 })).trim());
    return { ms, size };
  } finally {
    await rm(clone, { recursive: true, force: true });
    await rm(out, { force: true });
  }
}
