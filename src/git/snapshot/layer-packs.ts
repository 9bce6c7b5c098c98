/**
 * The packs of a snapshot: its layers (layers.ts), each obtained from the local layer cache, from
 * other replicas through the shared cache, or built (layer-build.ts), in that order.
 *
 * Every layer is a deterministic function of its two commits, so whichever way it was obtained the
 * bytes are the same, and the snapshot stays a pure function of (upstream URL, commit, format). All
 * layers of a snapshot are obtained concurrently; every pack-objects run goes through one limiter of
 * one slot per core, shared by every generation in the process, so a cold snapshot uses all cores and
 * two generations do not oversubscribe them.
 *
 * Layers except the top one end at or before the parent of the commit, so after a snapshot of depth n
 * the layers depth n + 1 needs are already determined: prepareNextLayers builds them into the cache
 * (in the background, after publishing), and the next commit's generation only packs its own objects.
 */
import { mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { runGit } from '../command.js';
import { CachewError, abortReason } from '../../util/errors.js';
import { silentLogger, type Logger } from '../../util/logger.js';
import { SingleFlight } from '../../util/single-flight.js';
import type { PackFiles } from './deterministic-pack.js';
import { SNAPSHOT_LAYER_BASE, snapshotFormatId } from './format.js';
import { buildLayer, semaphore, type Limiter } from './layer-build.js';
import { layerKey, pruneLayers, storeLayer, takeCachedLayer } from './layer-cache.js';
import { layerSpans } from './layers.js';
import { PURE_OBJECT_ENV } from './tree-list.js';
import { isSha1ObjectId } from '../../protocol/object-id.js';

/** One layer of a snapshot, resolved to commits. */
export interface PlannedLayer {
  key: string;
  /** The commit at the bottom boundary (excluded); undefined for the first layer. */
  from?: string;
  to: string;
  fromDepth: number;
  toDepth: number;
}

/** The layers of one snapshot, oldest first, decided by the commit graph alone. */
export interface LayerPlan {
  /** First-parent depth of the commit (root = 1). */
  depth: number;
  layers: PlannedLayer[];
}

/** A layer's packs as they go into the archive, in part order. */
export interface LayerPacks {
  key: string;
  packs: PackFiles[];
}

/**
 * Layers shared between replicas, bound to one repository (SharedLayers does this for the service).
 * `fetch` resolves undefined on any miss or cache problem, and leaves `outDir` as it was.
 */
export interface LayerShare {
  fetch(key: string, format: string, outDir: string, signal?: AbortSignal): Promise<PackFiles[] | undefined>;
  publish(key: string, format: string, packs: PackFiles[], keep: ReadonlySet<string>, signal?: AbortSignal): Promise<void>;
}

export interface SnapshotPacksOptions {
  signal?: AbortSignal;
  logger?: Logger;
  /** Per-repository directory for the layer cache; without it every layer is built or fetched. */
  layerCacheDir?: string;
  /** Asked after the local cache misses; given every layer built here. */
  sharedLayers?: LayerShare;
}

/** Where a layer came from (logged, and asserted on by tests). */
export type LayerSource = 'local' | 'shared' | 'built';

/** One slot per core for every pack-objects run in this process. */
const limit: Limiter = semaphore(availableParallelism());
/** One build per (cache directory, layer) at a time: a generation and a preparation share it. */
const filling = new SingleFlight<LayerSource>();

/** Works out the layer plan of `commit` in the mirror `gitDir`. */
export async function planLayers(gitDir: string, commit: string, signal?: AbortSignal): Promise<LayerPlan> {
  const depth = Number((await git(gitDir, ['rev-list', '--first-parent', '--count', commit, '--'], signal)).trim());
  return { depth, layers: await resolveSpans(gitDir, commit, depth, depth, signal) };
}

/**
 * The layers of depth `target` (<= depth + 1) whose top is at most `depth`, resolved against the
 * first-parent line of `commit` (at `depth`).
 */
async function resolveSpans(gitDir: string, commit: string, depth: number, target: number, signal?: AbortSignal): Promise<PlannedLayer[]> {
  const spans = layerSpans(target, SNAPSHOT_LAYER_BASE).filter((s) => s.to <= depth);
  const atDepth = new Map<number, string>([[depth, commit]]);
  for (const d of new Set(spans.flatMap((s) => [s.from, s.to]))) {
    if (d === 0 || atDepth.has(d)) continue;
    const ancestor = (await git(gitDir, ['rev-list', '--first-parent', `--skip=${depth - d}`, '--max-count=1', commit, '--'], signal)).trim();
    if (!isSha1ObjectId(ancestor)) throw new CachewError('internal', `no first-parent ancestor at depth ${d} of ${commit}`);
    atDepth.set(d, ancestor);
  }
  return spans.map((s) => {
    const from = s.from === 0 ? undefined : atDepth.get(s.from);
    const to = atDepth.get(s.to) as string;
    return { key: layerKey(from, to), from, to, fromDepth: s.from, toDepth: s.to };
  });
}

/**
 * Writes the packs of every layer of `commit` under the private, empty directory `scratch` and returns
 * them oldest layer first. Reuses / fills `options.layerCacheDir`, then prunes it to the layers of
 * this snapshot and of the next commit's; a failure to use the cache is logged and does not fail
 * the snapshot.
 */
export async function writeSnapshotPacks(gitDir: string, commit: string, scratch: string, options: SnapshotPacksOptions = {}): Promise<LayerPacks[]> {
  const { signal } = options;
  const log = (options.logger ?? silentLogger).child({ module: 'snapshot-layers' });
  const plan = await planLayers(gitDir, commit, signal);
  const next = await resolveSpans(gitDir, commit, plan.depth, plan.depth + 1, signal);
  const keep = new Set([...plan.layers, ...next].map((l) => l.key));
  const ctx: Context = { gitDir, format: await snapshotFormatId(), scratch, keep, log, ...options };
  const settled = await Promise.allSettled(plan.layers.map((layer, i) => obtain(layer, `layer-${i}`, ctx)));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  const result = settled.map((s, i) => {
    const { packs, source } = (s as PromiseFulfilledResult<Obtained>).value;
    const layer = plan.layers[i];
    log.debug({ commit, layer: `${layer.fromDepth}..${layer.toDepth}`, source, packs: packs.length, bytes: sum(packs) }, 'layer ready');
    return { key: layer.key, packs, source };
  });
  if (options.layerCacheDir !== undefined) await pruneQuietly(options.layerCacheDir, keep, log);
  log.debug(
    { commit, depth: plan.depth, layers: result.length, built: result.filter((l) => l.source === 'built').length, bytes: result.reduce((n, l) => n + sum(l.packs), 0) },
    'layer packs ready',
  );
  return result.map(({ key, packs }) => ({ key, packs }));
}

/**
 * Builds (or fetches) into the layer cache the layers a snapshot of the next first-parent commit after
 * `commit` will carry, besides its own top layer. Needs a layer cache; safe to run beside generations.
 */
export async function prepareNextLayers(gitDir: string, commit: string, scratch: string, options: SnapshotPacksOptions): Promise<void> {
  if (options.layerCacheDir === undefined) return;
  const log = (options.logger ?? silentLogger).child({ module: 'snapshot-layers' });
  const plan = await planLayers(gitDir, commit, options.signal);
  const next = await resolveSpans(gitDir, commit, plan.depth, plan.depth + 1, options.signal);
  const keep = new Set([...plan.layers, ...next].map((l) => l.key));
  const ctx: Context = { gitDir, format: await snapshotFormatId(), scratch, keep, log, ...options };
  for (const [i, layer] of next.entries()) await obtain(layer, `next-${i}`, ctx);
}

interface Context extends SnapshotPacksOptions {
  gitDir: string;
  format: string;
  scratch: string;
  keep: ReadonlySet<string>;
  log: Logger;
}

interface Obtained {
  packs: PackFiles[];
  source: LayerSource;
}

async function obtain(layer: PlannedLayer, name: string, ctx: Context): Promise<Obtained> {
  const dir = join(ctx.scratch, name);
  await mkdir(dir);
  const cacheDir = ctx.layerCacheDir;
  if (cacheDir !== undefined) {
    const cached = await takeCachedLayer(cacheDir, layer.key, ctx.format, dir);
    if (cached !== undefined) return { packs: cached, source: 'local' };
    let source: LayerSource | undefined;
    try {
      source = await filling.run(`${cacheDir}\n${layer.key}`, async () => {
        const work = join(ctx.scratch, `${name}-fill`);
        await mkdir(work);
        const got = await fetchOrBuild(layer, work, ctx);
        await storeLayer(cacheDir, layer.key, ctx.format, got.packs);
        return got.source;
      });
    } catch (err) {
      // Another caller's failure or abort, or a cache that cannot be written: do it ourselves below.
      if (ctx.signal?.aborted) throw abortReason(ctx.signal);
      ctx.log.warn({ err, layer: layer.key }, 'could not fill the layer cache');
    }
    if (source !== undefined) {
      const filled = await takeCachedLayer(cacheDir, layer.key, ctx.format, dir);
      if (filled !== undefined) return { packs: filled, source };
    }
  }
  return fetchOrBuild(layer, dir, ctx);
}

async function fetchOrBuild(layer: PlannedLayer, dir: string, ctx: Context): Promise<Obtained> {
  const shared = ctx.sharedLayers;
  if (shared !== undefined) {
    // Its own directory: whatever a failed fetch leaves behind cannot disturb the build below.
    const fetchDir = join(dir, 'shared');
    await mkdir(fetchDir);
    const packs = await shared.fetch(layer.key, ctx.format, fetchDir, ctx.signal);
    if (packs !== undefined) return { packs, source: 'shared' };
  }
  const buildDir = join(dir, 'build');
  await mkdir(buildDir);
  const packs = await buildLayer(ctx.gitDir, layer.from, layer.to, buildDir, { signal: ctx.signal, limit });
  if (shared !== undefined) {
    try {
      await shared.publish(layer.key, ctx.format, packs, ctx.keep, ctx.signal);
    } catch (err) {
      if (ctx.signal?.aborted) throw abortReason(ctx.signal);
      ctx.log.warn({ err, layer: layer.key }, 'could not share the layer');
    }
  }
  return { packs, source: 'built' };
}

async function pruneQuietly(cacheDir: string, keep: ReadonlySet<string>, log: Logger): Promise<void> {
  try {
    await pruneLayers(cacheDir, keep);
  } catch (err) {
    log.warn({ err, cacheDir }, 'could not prune the layer cache');
  }
}

function git(gitDir: string, args: string[], signal?: AbortSignal): Promise<string> {
  return runGit(args, { cwd: gitDir, env: PURE_OBJECT_ENV, signal });
}

function sum(packs: PackFiles[]): number {
  return packs.reduce((n, p) => n + p.packSize, 0);
}
