/**
 * The frame table of a snapshot archive (format v3, docs/snapshots.md "Stable frames").
 *
 * A v3 archive is a sequence of independent zstd frames, each the compression of one stretch of the
 * tar stream cut at a stable place (archive.ts). It starts with a zstd *skippable* frame (magic
 * 0x184D2A50, which every zstd decoder steps over, so `zstd -d` and `tar --zstd` read the archive as
 * usual) whose payload is the table: for every data frame its offset and length in the archive, the
 * length of the tar bytes it decodes to, and the sha256 of its compressed bytes. The same table is
 * in the snapshot record, so a client can compare two snapshots and fetch only the frames it lacks.
 *
 * Payload layout (fixed widths, little-endian, so the bytes are a plain function of the frames):
 *   "cachew-frames-v1\n" | count: u32 | count × (offset: u64, length: u64, size: u64, sha256: 32 bytes)
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';

/** One data frame of an archive. */
export interface FrameEntry {
  /** Byte offset of the frame in the archive. */
  offset: number;
  /** Compressed length. */
  length: number;
  /** Length of the tar bytes the frame decodes to. */
  size: number;
  /** sha256 hex of the compressed bytes. */
  sha256: string;
}

const SKIPPABLE_MAGIC = 0x184d2a50;
const TAG = Buffer.from('cachew-frames-v1\n', 'latin1');
const ENTRY_BYTES = 8 + 8 + 8 + 32;
/** Skippable frame header: magic (4) + payload length (4). */
const HEADER_BYTES = 8;

/** Length of the table frame for `count` data frames (known before any offset is). */
export function frameTableLength(count: number): number {
  return HEADER_BYTES + TAG.length + 4 + count * ENTRY_BYTES;
}

/** The skippable zstd frame that carries `frames`. */
export function encodeFrameTable(frames: readonly FrameEntry[]): Buffer {
  const out = Buffer.alloc(frameTableLength(frames.length));
  out.writeUInt32LE(SKIPPABLE_MAGIC, 0);
  out.writeUInt32LE(out.length - HEADER_BYTES, 4);
  TAG.copy(out, HEADER_BYTES);
  let at = HEADER_BYTES + TAG.length;
  out.writeUInt32LE(frames.length, at);
  at += 4;
  for (const frame of frames) {
    out.writeBigUInt64LE(BigInt(frame.offset), at);
    out.writeBigUInt64LE(BigInt(frame.length), at + 8);
    out.writeBigUInt64LE(BigInt(frame.size), at + 16);
    Buffer.from(frame.sha256, 'hex').copy(out, at + 24);
    at += ENTRY_BYTES;
  }
  return out;
}

/** Parses a table frame (the start of an archive); undefined when `bytes` does not begin with one. */
export function parseFrameTable(bytes: Buffer): FrameEntry[] | undefined {
  if (bytes.length < HEADER_BYTES + TAG.length + 4) return undefined;
  if (bytes.readUInt32LE(0) !== SKIPPABLE_MAGIC) return undefined;
  if (!bytes.subarray(HEADER_BYTES, HEADER_BYTES + TAG.length).equals(TAG)) return undefined;
  const count = bytes.readUInt32LE(HEADER_BYTES + TAG.length);
  if (bytes.readUInt32LE(4) !== frameTableLength(count) - HEADER_BYTES || bytes.length < frameTableLength(count)) return undefined;
  const frames: FrameEntry[] = [];
  let at = HEADER_BYTES + TAG.length + 4;
  for (let i = 0; i < count; i++, at += ENTRY_BYTES) {
    frames.push({
      offset: Number(bytes.readBigUInt64LE(at)),
      length: Number(bytes.readBigUInt64LE(at + 8)),
      size: Number(bytes.readBigUInt64LE(at + 16)),
      sha256: bytes.subarray(at + 24, at + 24 + 32).toString('hex'),
    });
  }
  return frames;
}

/**
 * Reads the table at the start of the archive `path` and checks it against the file: the frames are
 * contiguous from the end of the table to the end of the file, each with its recorded sha256.
 * Returns the frames; throws with the first mismatch.
 */
export async function verifyFrameTable(path: string): Promise<FrameEntry[]> {
  const handle = await open(path, 'r');
  let fileSize: number;
  let head: Buffer;
  try {
    fileSize = (await handle.stat()).size;
    const first = Buffer.alloc(HEADER_BYTES);
    await handle.read(first, 0, HEADER_BYTES, 0);
    const length = HEADER_BYTES + (first.readUInt32LE(0) === SKIPPABLE_MAGIC ? first.readUInt32LE(4) : 0);
    head = Buffer.alloc(Math.min(length, fileSize));
    await handle.read(head, 0, head.length, 0);
  } finally {
    await handle.close();
  }
  const frames = parseFrameTable(head);
  if (frames === undefined) throw new Error(`${path} does not start with a frame table`);
  let expected = head.length;
  for (const [i, frame] of frames.entries()) {
    if (frame.offset !== expected) throw new Error(`frame ${i} starts at ${frame.offset}, expected ${expected}`);
    const hash = createHash('sha256');
    let seen = 0;
    if (frame.length > 0) {
      for await (const chunk of createReadStream(path, { start: frame.offset, end: frame.offset + frame.length - 1 }) as AsyncIterable<Buffer>) {
        hash.update(chunk);
        seen += chunk.length;
      }
    }
    if (seen !== frame.length || hash.digest('hex') !== frame.sha256) throw new Error(`frame ${i} does not match its sha256`);
    expected += frame.length;
  }
  if (expected !== fileSize) throw new Error(`frames end at ${expected}, the archive at ${fileSize}`);
  return frames;
}
