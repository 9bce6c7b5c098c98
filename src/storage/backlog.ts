/**
 * The publish backlog: snapshots this replica generated (or re-pointed to) while the shared tier was
 * unreachable. Their blob, record and pointer were written to the local tiers only, so this replica
 * serves them at once; each also gets a small entry here, and once S3 answers again the snapshot
 * service publishes every entry the normal way (blob create-if-absent, record first-writer-wins,
 * pointer forward-only by compare-and-swap) and removes it.
 *
 * Entries are files (`<dir>/<sha256 of host/repo@commit>.json`), not cache objects, so LRU eviction of
 * the disk tier can never drop one, and they survive a restart. An entry is written to a temp name and
 * renamed, so a crash leaves either the whole entry or nothing (leftover temp names are removed at
 * start-up). If the local blob was evicted before S3 came back, the service regenerates the commit.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isCommit } from '../protocol/routes.js';
import { isSha256Hex } from '../protocol/etag.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { parseFrames, type SnapshotRecord } from './records.js';

/** One snapshot waiting to be published to the shared tier. */
export interface PendingSnapshot {
  host: string;
  repo: string;
  commit: string;
  digest: string;
  size: number;
  format?: string;
  /** The record's data frames (format v3 and later), as generated. */
  frames?: SnapshotRecord['frames'];
  /** The pointer was moved with `force` (a force-push); publishing moves it the same way. */
  force?: boolean;
}

export interface PublishBacklogOptions {
  dir: string;
  logger?: Logger;
  /** Told the number of entries after every change (metrics). */
  onSize?: (entries: number) => void;
}

const TEMP_PREFIX = '.tmp-';

function parseEntry(value: unknown): PendingSnapshot | undefined {
  const v = value as Partial<PendingSnapshot> | null;
  if (!v || typeof v !== 'object') return undefined;
  if (typeof v.host !== 'string' || typeof v.repo !== 'string') return undefined;
  if (typeof v.commit !== 'string' || !isCommit(v.commit) || typeof v.digest !== 'string' || !isSha256Hex(v.digest)) return undefined;
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) return undefined;
  const entry: PendingSnapshot = { host: v.host, repo: v.repo, commit: v.commit, digest: v.digest, size: v.size };
  if (typeof v.format === 'string') entry.format = v.format;
  if (Array.isArray(v.frames)) entry.frames = parseFrames(v.frames, 'backlog entry');
  if (v.force === true) entry.force = true;
  return entry;
}

export class PublishBacklog {
  private readonly dir: string;
  private readonly logger: Logger;
  private entries: number;

  constructor(private readonly options: PublishBacklogOptions) {
    this.dir = options.dir;
    this.logger = (options.logger ?? silentLogger).child({ module: 'publish-backlog' });
    mkdirSync(this.dir, { recursive: true });
    let names = readdirSync(this.dir);
    for (const name of names.filter((n) => n.startsWith(TEMP_PREFIX))) rmSync(join(this.dir, name), { force: true });
    names = names.filter((n) => n.endsWith('.json'));
    this.entries = names.length;
    options.onSize?.(this.entries);
  }

  /** Entries waiting (as of the last change this instance made or saw). */
  get size(): number {
    return this.entries;
  }

  private fileOf(entry: Pick<PendingSnapshot, 'host' | 'repo' | 'commit'>): string {
    const id = createHash('sha256').update(`${entry.host}/${entry.repo}@${entry.commit}`).digest('hex');
    return join(this.dir, `${id}.json`);
  }

  /** Records (or replaces) the entry of `entry.commit`; durable once this resolves. */
  async add(entry: PendingSnapshot): Promise<void> {
    const temp = join(this.dir, `${TEMP_PREFIX}${randomUUID()}`);
    try {
      await writeFile(temp, `${JSON.stringify(entry)}\n`, { flush: true });
      await rename(temp, this.fileOf(entry));
    } finally {
      await rm(temp, { force: true });
    }
    await this.recount();
    this.logger.info({ host: entry.host, repo: entry.repo, commit: entry.commit }, 'snapshot kept locally until S3 is back');
  }

  /** Every entry; unreadable files are reported and skipped (never silently dropped). */
  async list(): Promise<PendingSnapshot[]> {
    const out: PendingSnapshot[] = [];
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith('.json')) continue;
      try {
        const entry = parseEntry(JSON.parse(await readFile(join(this.dir, name), 'utf8')));
        if (entry) out.push(entry);
        else this.logger.error({ file: name }, 'unreadable publish backlog entry');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.error({ err, file: name }, 'unreadable publish backlog entry');
      }
    }
    return out;
  }

  async remove(entry: Pick<PendingSnapshot, 'host' | 'repo' | 'commit'>): Promise<void> {
    await rm(this.fileOf(entry), { force: true });
    await this.recount();
  }

  private async recount(): Promise<void> {
    this.entries = (await readdir(this.dir)).filter((n) => n.endsWith('.json')).length;
    this.options.onSize?.(this.entries);
  }
}
