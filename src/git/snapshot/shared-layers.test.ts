/**
 * Layers shared between replicas (shared-layers.ts, layer-packs.ts): a replica with an empty local
 * layer cache takes another replica's layers from the shared cache instead of building them, snapshot
 * bytes stay identical, and anything wrong in the shared cache (a missing blob, a blob with other
 * bytes, another format, a corrupt record) makes it build the layer again.
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
import { snapshotFormatId } from './format.js';
import { buildLayer } from './layer-build.js';
import { layerKey } from './layer-cache.js';
import type { LayerSource } from './layer-packs.js';
import { readJson, writeJson } from '../../storage/records.js';
import { SharedLayers, layerRecordKey, parseLayerRecord, type LayerRecord } from './shared-layers.js';
import { buildLongHistory } from './testing/long-history.js';

const URL = 'https://example.com/org/repo.git';
const HOST = 'example.com:8443';
const REPO = 'org/repo';
/** Depth 70: 69 = 64 + 4 + 1, so the layers are (0, 64], (64, 68], (68, 69] and (69, 70]. */
const COMMITS = 70;
const BASE_DEPTH = 64;

void describe('shared layers', { timeout: 170_000 }, () => {
  let root: string;
  let mirrorA: string;
  let mirrorB: string;
  /** main's first-parent chain, oldest first: mainline[d - 1] has depth d. */
  let mainline: string[];
  let head: string;
  /** The key of the big first layer (0, 64]. */
  let baseKey: string;
  let format: string;
  /** sha256 of the head's snapshot made without any cache. */
  let reference: string;
  let cache: MemoryCache;
  let shared: SharedLayers;
  let dirs = 0;

  const fresh = async (name: string): Promise<string> => {
    const dir = join(root, `${name}-${dirs++}`);
    await mkdir(dir);
    return dir;
  };

  /** Generates a snapshot with its own empty (or the given) layer cache; reports where its first layer came from. */
  async function snapshot(
    mirror: string,
    commit: string,
    options: { shared?: SharedLayers; layerCacheDir?: string } = {},
  ): Promise<{ sha256: string; source: LayerSource | undefined }> {
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
        layerCacheDir: options.layerCacheDir ?? (await fresh('packs')),
        sharedLayers: share && {
          fetch: (k, f, o, s) => share.fetch(HOST, REPO, k, f, o, s),
          publish: (k, f, p, keep, s) => share.publish(HOST, REPO, k, f, p, keep, s),
        },
      });
      const ready = lines.map((l) => JSON.parse(l) as { msg: string; layer?: string; source?: LayerSource }).find((l) => l.msg === 'layer ready' && l.layer === `0..${BASE_DEPTH}`);
      return { sha256: result.sha256, source: ready?.source };
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }

  async function record(): Promise<LayerRecord | undefined> {
    return (await readJson(cache, layerRecordKey(HOST, REPO), parseLayerRecord))?.value;
  }

  /** The base layer's only pack in the record. */
  async function basePack(): Promise<LayerRecord['layers'][number]['packs'][number]> {
    const entry = (await record())?.layers.find((l) => l.key === baseKey);
    assert.ok(entry !== undefined, 'the base layer is in the record');
    assert.equal(entry.packs.length, 1);
    return entry.packs[0];
  }

  async function hasBlob(digest: string): Promise<boolean> {
    return (await cache.stat(blobKey(digest))) !== undefined;
  }

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'cachew-shared-layers-'));
    const upstream = join(root, 'upstream.git');
    mainline = await buildLongHistory(upstream, COMMITS);
    head = mainline[COMMITS - 1];
    baseKey = layerKey(undefined, mainline[BASE_DEPTH - 1]);
    format = await snapshotFormatId();
    mirrorA = join(root, 'a.git');
    await runGit(['clone', '-q', '--mirror', upstream, mirrorA]);
    // Replica B's mirror is independent and packed differently: it must not matter.
    mirrorB = join(root, 'b.git');
    await runGit(['clone', '-q', '--no-local', '--mirror', upstream, mirrorB]);
    await runGit(['repack', '-q', '-a', '-d', '-f', '--window=50', '--depth=5'], { cwd: mirrorB });
    reference = (await snapshot(mirrorB, head)).sha256;
    cache = new MemoryCache({ limitBytes: 1 << 30 });
    shared = new SharedLayers({ cache });
  });

  after(async () => {
    await cache.close();
    await rm(root, { recursive: true, force: true });
  });

  void it('publishes what one replica builds and lets another replica fetch it', async () => {
    const a = await snapshot(mirrorA, head, { shared });
    assert.equal(a.source, 'built');
    assert.equal(a.sha256, reference);
    const stored = await record();
    assert.ok(stored !== undefined, 'record written');
    assert.equal(stored.format, format);
    assert.equal(stored.layers.length, 3, 'every layer of the snapshot: (0, 64], (64, 69], (69, 70]');
    const pack = await basePack();
    assert.match(pack.name, /^pack-[0-9a-f]{40}$/);
    assert.equal((await cache.stat(blobKey(pack.pack.sha256)))?.size, pack.pack.size);
    assert.equal((await cache.stat(blobKey(pack.idx.sha256)))?.size, pack.idx.size);
    const keys: string[] = [];
    for await (const meta of cache.list('')) keys.push(meta.key);
    const blobs = stored.layers.flatMap((l) => l.packs.flatMap((p) => [blobKey(p.pack.sha256), blobKey(p.idx.sha256)]));
    assert.deepEqual(keys.sort(), [...blobs, 'layers/example.com_8443/org/repo.json'].sort());

    // Replica B: another mirror, an empty local layer cache.
    const layerCacheDir = await fresh('packs');
    const b = await snapshot(mirrorB, head, { shared, layerCacheDir });
    assert.equal(b.source, 'shared', 'fetched, not rebuilt');
    assert.equal(b.sha256, reference);
    // ...and kept in its local cache, which the next generation (the parent commit) uses.
    assert.ok((await readdir(layerCacheDir)).includes(baseKey));
    const next = await snapshot(mirrorB, mainline[COMMITS - 2], { shared, layerCacheDir });
    assert.equal(next.source, 'local');
    assert.equal(next.sha256, (await snapshot(mirrorA, mainline[COMMITS - 2])).sha256);
  });

  void it('builds again when a blob is missing, and republishes it', async () => {
    const pack = await basePack();
    assert.equal(await cache.delete(blobKey(pack.idx.sha256)), true);
    const b = await snapshot(mirrorB, head, { shared });
    assert.equal(b.source, 'built');
    assert.equal(b.sha256, reference);
    assert.ok(await hasBlob(pack.idx.sha256), 'idx blob published again');
    assert.equal((await snapshot(mirrorB, head, { shared })).source, 'shared');
  });

  void it('builds again when a blob holds other bytes, and deletes the blob the old record named', async () => {
    const stored = await record();
    assert.ok(stored !== undefined);
    const pack = await basePack();
    // Right length and a self-consistent blob, but not a pack: only the pack check can tell.
    const junk = randomBytes(pack.pack.size);
    const junkDigest = createHash('sha256').update(junk).digest('hex');
    await putBlob(cache, junkDigest, Readable.from([junk]));
    const damaged: LayerRecord = {
      ...stored,
      layers: stored.layers.map((l) => (l.key === baseKey ? { key: l.key, packs: [{ ...pack, pack: { ...pack.pack, sha256: junkDigest } }] } : l)),
    };
    await writeJson(cache, layerRecordKey(HOST, REPO), damaged);

    const out = await fresh('fetch');
    assert.equal(await shared.fetch(HOST, REPO, baseKey, format, out), undefined);
    assert.deepEqual(await readdir(out), [], 'nothing left behind');

    const b = await snapshot(mirrorB, head, { shared });
    assert.equal(b.source, 'built');
    assert.equal(b.sha256, reference);
    assert.deepEqual(await basePack(), pack, 'the record names the real pack again');
    assert.equal(await hasBlob(junkDigest), false, 'the replaced entry\'s blob is deleted');
    assert.ok(await hasBlob(pack.pack.sha256));
  });

  void it('ignores a record of another format, another layer, or one that does not parse', async () => {
    const stored = await record();
    assert.ok(stored !== undefined);
    const out = await fresh('fetch');
    assert.ok((await shared.fetch(HOST, REPO, baseKey, format, out)) !== undefined, 'the intact record is usable');
    await rm(out, { recursive: true });
    await mkdir(out);

    await writeJson(cache, layerRecordKey(HOST, REPO), { ...stored, format: 'cachew-snapshot-v0;other' });
    assert.equal(await shared.fetch(HOST, REPO, baseKey, format, out), undefined);
    const b = await snapshot(mirrorB, head, { shared });
    assert.equal(b.source, 'built');
    assert.equal(b.sha256, reference);
    assert.deepEqual((await record())?.format, format);

    assert.equal(await shared.fetch(HOST, REPO, layerKey(undefined, mainline[10]), format, out), undefined, 'another layer');
    await writeJson(cache, layerRecordKey(HOST, REPO), { ...stored, layers: [{ key: baseKey, packs: [{ name: 'pack-x', pack: {}, idx: {} }] }] });
    assert.equal(await shared.fetch(HOST, REPO, baseKey, format, out), undefined, 'corrupt record');
    assert.deepEqual(await readdir(out), []);
    await writeJson(cache, layerRecordKey(HOST, REPO), stored);
  });

  void it('drops layers the caller no longer keeps and deletes their blobs; throws on abort', async () => {
    const old = await basePack();
    const dir = await fresh('other');
    const limit = <T>(work: () => Promise<T>): Promise<T> => work();
    const other = await buildLayer(mirrorA, undefined, head, dir, { limit });
    const key = layerKey(undefined, head);
    await shared.publish(HOST, REPO, key, format, other, new Set([key]));
    const now = await record();
    assert.deepEqual(now?.layers.map((l) => l.key), [key]);
    assert.equal(await hasBlob(old.pack.sha256), false);
    assert.equal(await hasBlob(old.idx.sha256), false);

    const out = await fresh('fetch');
    const fetched = await shared.fetch(HOST, REPO, key, format, out);
    assert.deepEqual(fetched?.map((p) => p.hash), other.map((p) => p.hash));
    await rm(out, { recursive: true });
    await mkdir(out);
    await assert.rejects(shared.fetch(HOST, REPO, key, format, out, AbortSignal.abort()), AbortedError);
    assert.deepEqual(await readdir(out), []);
  });
});
