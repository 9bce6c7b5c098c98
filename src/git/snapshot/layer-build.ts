/**
 * Builds one layer (layers.ts) from a mirror: the objects reachable from its top commit and not from
 * its bottom commit, as one or more deterministic packs (deterministic-pack.ts).
 *
 * Steps, each a pure function of the two commits:
 *   1. `git rev-list --objects <to> [^<from>]` lists the layer's objects with their paths, in the walk
 *      order pack-objects `--revs` itself would use; the list goes to a file (never held in memory);
 *   2. a layer of c objects is cut into P = min(MAX_PARTS, ceil(c / OBJECTS_PER_PART)) parts: commits
 *      and tags in part 0, trees and blobs by a hash of their base name, so the versions of a file
 *      (and same-named files, git's own delta heuristic) stay in one part and keep their deltas;
 *   3. each part is one single-threaded `pack-objects` run fed that part's lines in list order, its
 *      objects stored without zlib (deterministic-pack.ts PackProfile: the archive's zstd does it).
 * Parts are independent, so a big layer uses several cores (the caller runs them through its
 * limiter) while each pack stays deterministic. P and the hash are part of the snapshot format.
 */
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { spawnGit } from '../command.js';
import { ByteReader } from './byte-reader.js';
import { writeDeterministicPack, type PackFiles } from './deterministic-pack.js';
import { fnv1a32 } from './stable-hash.js';
import { PURE_OBJECT_ENV } from './tree-list.js';

/** A layer needs this many objects per part before it is cut (part of the format). */
export const OBJECTS_PER_PART = 40_000;
/** At most this many parts per layer (part of the format). */
export const MAX_PARTS = 8;

/** Runs `work` when a slot is free (one slot per core): every pack-objects run goes through it. */
export type Limiter = <T>(work: () => Promise<T>) => Promise<T>;

export interface BuildLayerOptions {
  signal?: AbortSignal;
  limit: Limiter;
  /** Parts are cut per this many objects (default OBJECTS_PER_PART, the format's value). */
  objectsPerPart?: number;
}

/**
 * Packs the layer (`from`, `to`] of the mirror `gitDir` (`from` undefined: everything reachable from
 * `to`) into `dir` (empty, private): returns the packs in part order.
 */
export async function buildLayer(gitDir: string, from: string | undefined, to: string, dir: string, options: BuildLayerOptions): Promise<PackFiles[]> {
  const { signal, limit } = options;
  const listPath = join(dir, 'objects.list');
  const count = await limit(() => listObjects(gitDir, from, to, listPath, signal));
  const parts = partCount(count, options.objectsPerPart);
  const partPaths = Array.from({ length: parts }, (_, i) => join(dir, `part-${i}.list`));
  const sizes = await splitList(listPath, partPaths);
  const packs: Array<Promise<PackFiles | undefined>> = partPaths.map(async (path, i) => {
    if (sizes[i] === 0) return undefined;
    const out = join(dir, `part-${i}`);
    await mkdir(out);
    return limit(() => writeDeterministicPack(gitDir, createReadStream(path), out, { signal, profile: 'layer' }));
  });
  const settled = await Promise.allSettled(packs);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return settled.flatMap((s) => (s.status === 'fulfilled' && s.value !== undefined ? [s.value] : []));
}

/** Parts for a layer of `count` objects. */
export function partCount(count: number, perPart = OBJECTS_PER_PART): number {
  return Math.max(1, Math.min(MAX_PARTS, Math.ceil(count / perPart)));
}

/**
 * The part of one `rev-list --objects` line: commits/tags (no path) go to part 0, trees and blobs by
 * FNV-1a of the last path component (the name git's delta search groups by).
 */
export function partOf(line: Buffer, parts: number): number {
  if (parts === 1) return 0;
  const space = line.indexOf(0x20);
  if (space < 0) return 0;
  const slash = line.lastIndexOf(0x2f);
  return fnv1a32(line, Math.max(space, slash) + 1) % parts;
}

/** Streams `rev-list --objects` of the layer into `listPath`; returns the number of objects. */
async function listObjects(gitDir: string, from: string | undefined, to: string, listPath: string, signal?: AbortSignal): Promise<number> {
  const revs = from === undefined ? `${to}\n` : `${to}\n^${from}\n`;
  const proc = spawnGit(['rev-list', '--objects', '--stdin'], { cwd: gitDir, env: PURE_OBJECT_ENV, signal, input: revs, timeoutMs: 3_600_000 });
  const file = new ListFile(listPath);
  let count = 0;
  try {
    for await (const chunk of proc.stdout as AsyncIterable<Buffer>) {
      for (let at = chunk.indexOf(0x0a); at >= 0; at = chunk.indexOf(0x0a, at + 1)) count++;
      await file.write(chunk);
    }
    await proc.done;
  } catch (err) {
    proc.kill();
    await proc.done.catch(() => undefined);
    file.destroy();
    throw err;
  }
  await file.close();
  return count;
}

/** Splits the list file line by line into `partPaths` (by partOf); returns each part's line count. */
async function splitList(listPath: string, partPaths: string[]): Promise<number[]> {
  const outs = partPaths.map((p) => new ListFile(p));
  const sizes = partPaths.map(() => 0);
  try {
    const reader = new ByteReader(createReadStream(listPath) as Readable);
    for (let line = await reader.readUntil(0x0a, 1 << 20); line !== undefined; line = await reader.readUntil(0x0a, 1 << 20)) {
      const part = partOf(line, outs.length);
      sizes[part]++;
      await outs[part].write(Buffer.concat([line, NEWLINE]));
    }
  } catch (err) {
    for (const out of outs) out.destroy();
    throw err;
  }
  await Promise.all(outs.map((out) => out.close()));
  return sizes;
}

const NEWLINE = Buffer.from('\n');

/**
 * A list file written line by line. Its stream always has an 'error' listener: a file stream can fail
 * between two writes (its directory removed during shutdown, ENOSPC), and an 'error' event with no
 * listener would crash the whole server instead of failing this one generation. The first error is
 * rethrown by the next write or by close().
 */
class ListFile {
  private readonly stream: WriteStream;
  private failure?: Error;

  constructor(path: string) {
    this.stream = createWriteStream(path, { flags: 'wx' });
    this.stream.on('error', (err) => (this.failure ??= err));
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    if (this.stream.write(chunk)) return;
    await new Promise<void>((resolve, reject) => {
      const onDrain = (): void => {
        this.stream.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        this.stream.off('drain', onDrain);
        reject(this.failure ?? new Error('layer list file closed while writing'));
      };
      this.stream.once('drain', onDrain);
      this.stream.once('close', onClose);
    });
  }

  async close(): Promise<void> {
    this.stream.end();
    await finished(this.stream);
  }

  destroy(): void {
    this.stream.destroy();
  }
}

/** A counting semaphore as a Limiter: at most `slots` works run at once, in arrival order. */
export function semaphore(slots: number): Limiter {
  let free = Math.max(1, slots);
  const waiting: Array<() => void> = [];
  return async <T>(work: () => Promise<T>): Promise<T> => {
    if (free > 0) free--;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await work();
    } finally {
      const nextUp = waiting.shift();
      if (nextUp !== undefined) nextUp();
      else free++;
    }
  };
}
