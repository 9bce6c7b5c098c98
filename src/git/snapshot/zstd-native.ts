/**
 * Compresses a snapshot's frames in-process, with libzstd through the `zstd-napi` addon (the restore
 * client decompresses with the same addon, src/client/zstd-decompress.ts).
 *
 * Why not the zstd CLI (zstd.ts, still the fallback when the addon cannot load): the archive has
 * ~1,200 frames. With the CLI every light frame was written to a file, compressed by a batch process
 * into another file, read back and hashed, then copied into the archive; per snapshot of the bench
 * repository that was 34 processes and ~5 s of Node CPU around 2.7 s of actual compression. Here a
 * frame goes from the tar producer into libzstd and from libzstd into the archive body.
 *
 * The bytes are a pure function of the tar stream, the libzstd version (in the format id, as
 * `libzstd-<version>`) and these choices, which are part of the format:
 *   - level ZSTD_LEVEL, no frame checksum (since format v10): the archive's sha256 (its ETag) and the
 *     frame table's sha256 per frame already cover every byte, and a restoring client verifies the
 *     former; an XXH64 per frame cost the client's decompressing thread a pass over all decoded bytes
 *     (`zstd -d` of the bench snapshot: 0.50 vs 0.55 s user without/with);
 *   - a light frame (weight < BATCH_FRAME_LIMIT) is compressed in one call, single-threaded, its
 *     content size in the frame header (on the event loop: a few milliseconds per frame of ~1 MiB);
 *   - a heavy frame is streamed in libzstd's multi-threaded mode (worker threads of libzstd, off the
 *     event loop), no content size in the header. Multi-threaded output does not depend on the worker
 *     count (≥ 1; checked by zstd-native.test.ts), so replicas with different core counts agree.
 * The CLI writes other bytes (another zstd release, other frame modes), hence another format id.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { abortReason } from '../../util/errors.js';
import { zstdAddon, type CompressionContext, type ZstdAddon } from '../../util/zstd-addon.js';
import { encodeFrameTable, frameTableLength, type FrameEntry } from './frames.js';
import { BATCH_FRAME_LIMIT, ZSTD_LEVEL, type FramedResult, type FrameSource } from './zstd.js';

/** The addon's libzstd version (e.g. "1.5.7"), or undefined when the addon cannot load. */
export function nativeZstdVersion(): string | undefined {
  return zstdAddon()?.versionString();
}

/** Compressed bytes are written to the archive in pieces of about this size. */
const WRITE_BYTES = 1 << 20;

/** Frames compressed into a body file, in order; offsets come when bodies are assembled. */
export interface FramedBody {
  path: string;
  frames: Array<Omit<FrameEntry, 'offset'>>;
  /** Each frame's source weight (FrameSource.weight), which archive.ts orders frames by. */
  weights: number[];
}

/** Frame `frame` of body `body` in an assembleArchive call. */
export interface FrameRef {
  body: number;
  frame: number;
}

/**
 * Like compressFrames (zstd.ts) with libzstd in-process: each source becomes one frame, written in
 * order to a body file in `scratch`; then `outPath` (created or truncated, fsynced) gets the frame
 * table and the body. Requires the addon (nativeZstdVersion() defined). On failure or abort `outPath`
 * is removed and the error thrown. `workers`: libzstd threads for heavy frames (default one per
 * core); the bytes do not depend on it.
 */
export async function compressFramesNative(
  sources: AsyncIterable<FrameSource>,
  outPath: string,
  scratch: string,
  signal?: AbortSignal,
  workers = availableParallelism(),
): Promise<FramedResult> {
  const body = await compressToBody(sources, join(scratch, 'body'), signal, workers);
  try {
    return await assembleArchive([body], outPath, signal);
  } finally {
    await rm(body.path, { force: true });
  }
}

/**
 * Compresses each source into its own frame, appended in order to the new file `bodyPath`; the file
 * is removed on failure. Several bodies may be compressed at once (each its own contexts), and
 * assembled into one archive by assembleArchive.
 */
export async function compressToBody(
  sources: AsyncIterable<FrameSource> | Iterable<FrameSource>,
  bodyPath: string,
  signal?: AbortSignal,
  workers = availableParallelism(),
): Promise<FramedBody> {
  const zstd = zstdAddon();
  if (zstd === null) throw new Error('zstd-napi is not available');
  const body = new FrameWriter(await open(bodyPath, 'wx'));
  try {
    const frames: Array<Omit<FrameEntry, 'offset'>> = [];
    const weights: number[] = [];
    const light = context(zstd, 0);
    const buffers: LightBuffers = { input: Buffer.allocUnsafe(BATCH_FRAME_LIMIT), output: Buffer.allocUnsafe(zstd.compressBound(BATCH_FRAME_LIMIT)) };
    let heavy: CompressionContext | undefined;
    for await (const source of sources) {
      if (signal?.aborted) throw abortReason(signal);
      weights.push(source.weight);
      if (source.weight >= BATCH_FRAME_LIMIT) {
        heavy ??= context(zstd, Math.max(1, workers));
        frames.push(await streamFrame(zstd, heavy, source.bytes, body, signal));
      } else {
        frames.push(await wholeFrame(zstd, light, source.bytes, body, buffers, signal));
      }
    }
    await body.close();
    return { path: bodyPath, frames, weights };
  } catch (err) {
    await body.close().catch(() => undefined);
    await rm(bodyPath, { force: true });
    if (signal?.aborted) throw abortReason(signal);
    throw err;
  }
}

/** A compression context at the format's parameters; `workers` 0 = single-threaded mode. */
function context(zstd: ZstdAddon, workers: number): CompressionContext {
  const cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, ZSTD_LEVEL);
  cctx.setParameter(zstd.CParameter.checksumFlag, 0);
  cctx.setParameter(zstd.CParameter.contentSizeFlag, 1);
  cctx.setParameter(zstd.CParameter.nbWorkers, workers);
  return cctx;
}

/** Buffers reused by the light frames of one body (a frame's input and output, grown as needed). */
interface LightBuffers {
  input: Buffer;
  output: Buffer;
}

/** A light frame: collected whole (it is small by definition) and compressed in one call. */
async function wholeFrame(
  zstd: ZstdAddon,
  cctx: CompressionContext,
  bytes: AsyncIterable<Buffer> | Iterable<Buffer>,
  body: FrameWriter,
  buffers: LightBuffers,
  signal?: AbortSignal,
): Promise<Omit<FrameEntry, 'offset'>> {
  let size = 0;
  for await (const chunk of bytes) {
    if (signal?.aborted) throw abortReason(signal);
    if (size + chunk.length > buffers.input.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * buffers.input.length, size + chunk.length));
      buffers.input.copy(grown, 0, 0, size);
      buffers.input = grown;
    }
    chunk.copy(buffers.input, size);
    size += chunk.length;
  }
  const bound = zstd.compressBound(size);
  if (buffers.output.length < bound) buffers.output = Buffer.allocUnsafe(bound);
  const length = cctx.compress2(buffers.output, buffers.input.subarray(0, size));
  body.startFrame();
  await body.write(buffers.output.subarray(0, length));
  return { length, size, sha256: body.endFrame() };
}

/** A heavy frame: streamed through the multi-threaded context as it is produced. */
async function streamFrame(
  zstd: ZstdAddon,
  cctx: CompressionContext,
  bytes: AsyncIterable<Buffer> | Iterable<Buffer>,
  body: FrameWriter,
  signal?: AbortSignal,
): Promise<Omit<FrameEntry, 'offset'>> {
  cctx.reset(zstd.ResetDirective.sessionOnly);
  body.startFrame();
  const out = Buffer.allocUnsafe(WRITE_BYTES);
  let size = 0;
  let length = 0;
  const emit = async (produced: number): Promise<void> => {
    if (produced === 0) return;
    length += produced;
    await body.write(out.subarray(0, produced)); // copied by the writer: `out` is reused
  };
  for await (const chunk of bytes) {
    if (signal?.aborted) throw abortReason(signal);
    size += chunk.length;
    for (let at = 0; at < chunk.length; ) {
      const [, produced, consumed] = cctx.compressStream2(out, chunk.subarray(at), zstd.EndDirective.continue);
      at += consumed;
      await emit(produced);
    }
  }
  for (let left = 1; left !== 0; ) {
    const [remaining, produced] = cctx.compressStream2(out, EMPTY, zstd.EndDirective.end);
    left = remaining;
    await emit(produced);
  }
  return { length, size, sha256: body.endFrame() };
}

const EMPTY = Buffer.alloc(0);

/**
 * Appends frames to the body file in large writes, hashing each frame's bytes. Bytes are copied into
 * one reused buffer, so callers may reuse theirs and nothing is allocated per frame.
 */
class FrameWriter {
  private readonly buffer = Buffer.allocUnsafe(WRITE_BYTES);
  private used = 0;
  private frameHash?: Hash;
  private closed = false;

  constructor(private readonly file: FileHandle) {}

  startFrame(): void {
    this.frameHash = createHash('sha256');
  }

  /** sha256 hex of the bytes written since startFrame. */
  endFrame(): string {
    const digest = (this.frameHash as Hash).digest('hex');
    this.frameHash = undefined;
    return digest;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.frameHash?.update(chunk);
    for (let at = 0; at < chunk.length; ) {
      const n = Math.min(chunk.length - at, WRITE_BYTES - this.used);
      this.buffer.set(chunk.subarray(at, at + n), this.used);
      this.used += n;
      at += n;
      if (this.used === WRITE_BYTES) await this.flush();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.flush();
    } finally {
      await this.file.close();
    }
  }

  private async flush(): Promise<void> {
    for (let at = 0; at < this.used; ) at += (await this.file.write(this.buffer, at, this.used - at)).bytesWritten;
    this.used = 0;
  }
}

/**
 * Writes `outPath` (created or truncated, fsynced): the frame table, then the frames of the bodies in
 * `order` (default: every body's frames, body after body); hashes the whole. On failure `outPath` is
 * removed. The bodies are left in place.
 */
export async function assembleArchive(bodies: FramedBody[], outPath: string, signal?: AbortSignal, order?: FrameRef[]): Promise<FramedResult> {
  const refs = order ?? bodies.flatMap((b, body) => b.frames.map((_, frame) => ({ body, frame })));
  // Where each frame starts in its body file.
  const starts = bodies.map((b) => {
    let at = 0;
    return b.frames.map((f) => (at += f.length) - f.length);
  });
  let offset = frameTableLength(refs.length);
  const entries: FrameEntry[] = refs.map(({ body, frame }) => {
    const f = bodies[body].frames[frame];
    const entry = { offset, ...f };
    offset += f.length;
    return entry;
  });
  const hash = createHash('sha256');
  let size = 0;
  let file: FileHandle | undefined;
  const sources: FileHandle[] = [];
  try {
    file = await open(outPath, 'w', 0o644);
    const out = file;
    const write = async (chunk: Uint8Array): Promise<void> => {
      hash.update(chunk);
      size += chunk.length;
      for (let at = 0; at < chunk.length; ) at += (await out.write(chunk, at, chunk.length - at)).bytesWritten;
    };
    await write(encodeFrameTable(entries));
    for (const body of bodies) sources.push(await open(body.path, 'r'));
    const buffer = Buffer.allocUnsafe(4 * WRITE_BYTES);
    for (const { body, frame } of refs) {
      if (signal?.aborted) throw abortReason(signal);
      const { length } = bodies[body].frames[frame];
      for (let done = 0; done < length; ) {
        const want = Math.min(buffer.length, length - done);
        const { bytesRead } = await sources[body].read(buffer, 0, want, starts[body][frame] + done);
        if (bytesRead === 0) throw new Error(`body ${bodies[body].path} ends inside frame ${frame}`);
        await write(buffer.subarray(0, bytesRead));
        done += bytesRead;
      }
    }
    if (size !== offset) throw new Error(`archive is ${size} bytes, its frame table says ${offset}`);
    await file.sync();
    await file.close();
    file = undefined;
  } catch (err) {
    await file?.close().catch(() => undefined);
    await rm(outPath, { force: true });
    if (signal?.aborted) throw abortReason(signal);
    throw err;
  } finally {
    await Promise.all(sources.map((source) => source.close().catch(() => undefined)));
  }
  return { sha256: hash.digest('hex'), size, frames: entries };
}
