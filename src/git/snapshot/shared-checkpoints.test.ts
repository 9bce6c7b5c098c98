/**
 * Checkpoint packs shared between replicas (shared-checkpoints.ts, checkpoint.ts): a replica with an
 * empty local pack cache takes another replica's checkpoint pack from the shared cache instead of
 * computing it, snapshot bytes stay identical, and anything wrong in the shared cache (a missing blob,
 * a blob with other bytes, another format, a corrupt record) makes it compute the pack again.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pino } from 'pino';
import { MemoryCache } from '../../cache/memory.js';
import { blobKey, putBlob } from '../../cache/write.js';
import { AbortedError } from '../../util/errors.js';
import { runGit } from '../command.js';
import { generateSnapshot } from './archive.js';
import type { CheckpointSource } from './checkpoint.js';
import { writeDeterministicPack } from './deterministic-pack.js';
import { SNAPSHOT_CHECKPOINT_INTERVAL as K, snapshotFormatId } from './format.js';
import { readJson, writeJson } from './records.js';
import { SharedCheckpoints, checkpointKey, parseCheckpointRecord, type CheckpointRecord } from './shared-checkpoints.js';
import { buildLongHistory } from './testing/long-history.js';

const URL = 'https://example.com/org/repo.git';
const HOST = 'example.com:8443';
const REPO = 'org/repo';
const COMMITS = K + 6;

void describe('shared checkpoint packs', { timeout: 170_000 }, () => {
  let root: string;
  let mirrorA: string;
  let mirrorB: string;
  /** main's first-parent chain, oldest first: mainline[d - 1] has depth d. */
  let mainline: string[];
  let head: string;
  let checkpoint: string;
  let format: string;
  /** sha256 of the head's snapshot made without any cache. */
  let reference: string;
  let cache: MemoryCache;
  let shared: SharedCheckpoints;
  let dirs = 0;

  const fresh = async (name: string): Promise<string> => {
    const dir = join(root, `${name}-${dirs++}`);
    await mkdir(dir);
    return dir;
  };

  /** Generates a snapshot with its own empty (or the given) pack cache; reports where pack 1 came from. */
  async function snapshot(
    mirror: string,
    commit: string,
    options: { shared?: SharedCheckpoints; packCacheDir?: string } = {},
  ): Promise<{ sha256: string; source: CheckpointSource | undefined }> {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    const share = options.shared;
    const out = await fresh('out');
    try {
      const result = await generateSnapshot({ gitDir: mirror, commit, upstreamUrl: URL, defaultBranch: 'main' }, join(out, 'snap.tar.zst'), {
        logger: pino({ level: 'debug' }, sink),
        packCacheDir: options.packCacheDir ?? (await fresh('packs')),
        sharedCheckpoints: share && {
          fetch: (c, f, o, s) => share.fetch(HOST, REPO, c, f, o, s),
          publish: (c, f, p, s) => share.publish(HOST, REPO, c, f, p, s),
        },
      });
      const ready = lines.map((l) => JSON.parse(l) as { msg: string; checkpointSource?: CheckpointSource }).find((l) => l.msg === 'checkpoint packs ready');
      return { sha256: result.sha256, source: ready?.checkpointSource };
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }

  async function record(): Promise<CheckpointRecord | undefined> {
    return (await readJson(cache, checkpointKey(HOST, REPO), parseCheckpointRecord))?.value;
  }

  async function hasBlob(digest: string): Promise<boolean> {
    return (await cache.stat(blobKey(digest))) !== undefined;
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cachew-shared-checkpoints-'));
    const upstream = join(root, 'upstream.git');
    mainline = await buildLongHistory(upstream, COMMITS);
    head = mainline[COMMITS - 1];
    checkpoint = mainline[K - 1];
    format = await snapshotFormatId();
    mirrorA = join(root, 'a.git');
    await runGit(['clone', '-q', '--mirror', upstream, mirrorA]);
    // Replica B's mirror is independent and packed differently: it must not matter.
    mirrorB = join(root, 'b.git');
    await runGit(['clone', '-q', '--no-local', '--mirror', upstream, mirrorB]);
    await runGit(['repack', '-q', '-a', '-d', '-f', '--window=50', '--depth=5'], { cwd: mirrorB });
    reference = (await snapshot(mirrorB, head)).sha256;
    cache = new MemoryCache({ limitBytes: 1 << 30 });
    shared = new SharedCheckpoints({ cache });
  });

  after(async () => {
    await cache.close();
    await rm(root, { recursive: true, force: true });
  });

  void it('publishes what one replica computes and lets another replica fetch it', async () => {
    const a = await snapshot(mirrorA, head, { shared });
    assert.equal(a.source, 'computed');
    assert.equal(a.sha256, reference);
    const stored = await record();
    assert.ok(stored !== undefined, 'record written');
    assert.equal(stored.commit, checkpoint);
    assert.equal(stored.format, format);
    assert.match(stored.pack.name, /^pack-[0-9a-f]{40}$/);
    assert.equal((await cache.stat(blobKey(stored.pack.sha256)))?.size, stored.pack.size);
    assert.equal((await cache.stat(blobKey(stored.idx.sha256)))?.size, stored.idx.size);
    const keys: string[] = [];
    for await (const meta of cache.list('')) keys.push(meta.key);
    assert.deepEqual(keys.sort(), [blobKey(stored.idx.sha256), blobKey(stored.pack.sha256), 'checkpoints/example.com_8443/org/repo.json'].sort());

    // Replica B: another mirror, an empty local pack cache.
    const packCacheDir = await fresh('packs');
    const b = await snapshot(mirrorB, head, { shared, packCacheDir });
    assert.equal(b.source, 'shared', 'fetched, not recomputed');
    assert.equal(b.sha256, reference);
    // ...and kept in its local cache, which the next generation (another commit, same checkpoint) uses.
    assert.deepEqual(await readdir(packCacheDir), [checkpoint]);
    const next = await snapshot(mirrorB, mainline[COMMITS - 2], { shared, packCacheDir });
    assert.equal(next.source, 'local');
    assert.equal(next.sha256, (await snapshot(mirrorA, mainline[COMMITS - 2])).sha256);
  });

  void it('computes again when a blob is missing, and republishes it', async () => {
    const stored = await record();
    assert.ok(stored !== undefined);
    assert.equal(await cache.delete(blobKey(stored.idx.sha256)), true);
    const b = await snapshot(mirrorB, head, { shared });
    assert.equal(b.source, 'computed');
    assert.equal(b.sha256, reference);
    assert.ok(await hasBlob(stored.idx.sha256), 'idx blob published again');
    assert.equal((await snapshot(mirrorB, head, { shared })).source, 'shared');
  });

  void it('computes again when a blob holds other bytes, and deletes the blob the old record named', async () => {
    const stored = await record();
    assert.ok(stored !== undefined);
    // Right length and a self-consistent blob, but not a pack: only the pack check can tell.
    const junk = randomBytes(stored.pack.size);
    const junkDigest = createHash('sha256').update(junk).digest('hex');
    await putBlob(cache, junkDigest, Readable.from([junk]));
    await writeJson(cache, checkpointKey(HOST, REPO), { ...stored, pack: { ...stored.pack, sha256: junkDigest } });

    const out = await fresh('fetch');
    assert.equal(await shared.fetch(HOST, REPO, checkpoint, format, out), undefined);
    assert.deepEqual(await readdir(out), [], 'nothing left behind');

    const b = await snapshot(mirrorB, head, { shared });
    assert.equal(b.source, 'computed');
    assert.equal(b.sha256, reference);
    assert.deepEqual(await record(), stored, 'the record names the real pack again');
    assert.equal(await hasBlob(junkDigest), false, 'the replaced record\'s blob is deleted');
    assert.ok(await hasBlob(stored.pack.sha256));
  });

  void it('ignores a record of another format, another commit, or one that does not parse', async () => {
    const stored = await record();
    assert.ok(stored !== undefined);
    const out = await fresh('fetch');
    assert.ok((await shared.fetch(HOST, REPO, checkpoint, format, out)) !== undefined, 'the intact record is usable');
    await rm(out, { recursive: true });
    await mkdir(out);

    await writeJson(cache, checkpointKey(HOST, REPO), { ...stored, format: 'cachew-snapshot-v0;other' });
    assert.equal(await shared.fetch(HOST, REPO, checkpoint, format, out), undefined);
    const b = await snapshot(mirrorB, head, { shared });
    assert.equal(b.source, 'computed');
    assert.equal(b.sha256, reference);
    assert.deepEqual(await record(), stored);

    assert.equal(await shared.fetch(HOST, REPO, mainline[K], format, out), undefined, 'another commit');
    await writeJson(cache, checkpointKey(HOST, REPO), { ...stored, idx: { sha256: 'nope', size: 1 } });
    assert.equal(await shared.fetch(HOST, REPO, checkpoint, format, out), undefined, 'corrupt record');
    assert.deepEqual(await readdir(out), []);
    await writeJson(cache, checkpointKey(HOST, REPO), stored);
  });

  void it('replaces the record with a newer checkpoint and deletes the old blobs; throws on abort', async () => {
    const old = await record();
    assert.ok(old !== undefined);
    const dir = await fresh('other');
    const other = await writeDeterministicPack(mirrorA, head, dir);
    await shared.publish(HOST, REPO, head, format, other);
    const now = await record();
    assert.equal(now?.commit, head);
    assert.equal(now?.pack.name, `pack-${other.hash}`);
    assert.equal(await hasBlob(old.pack.sha256), false);
    assert.equal(await hasBlob(old.idx.sha256), false);

    const out = await fresh('fetch');
    const fetched = await shared.fetch(HOST, REPO, head, format, out);
    assert.equal(fetched?.hash, other.hash);
    await rm(out, { recursive: true });
    await mkdir(out);
    await assert.rejects(shared.fetch(HOST, REPO, head, format, out, AbortSignal.abort()), AbortedError);
    assert.deepEqual(await readdir(out), []);
  });
});
