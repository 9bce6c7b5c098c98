/**
 * The on-disk object format of DiskCache: one file per object holding the body followed by a trailer
 *
 *     <body bytes> <metadata JSON, utf-8> <u32 BE length of the JSON> <8-byte magic "CACHEW\x01\n">
 *
 * Body and metadata live in ONE file so that a single atomic rename publishes both, and a reader that
 * opened the file sees the metadata that belongs to exactly those bytes even while a replace renames a
 * newer version over the path. The body comes first so that it can be streamed in while being hashed
 * (the etag is only known at the end) and so that `head -c <size> <file>` recovers it for an operator.
 */
import type { FileHandle } from 'node:fs/promises';
import type { ObjectMeta } from './cache.js';

const MAGIC = Buffer.from('CACHEW\x01\n', 'latin1');
const FOOTER_BYTES = 4 + MAGIC.length;
/** Metadata is "small string metadata"; anything bigger means a corrupt or foreign file. */
const MAX_TRAILER_JSON = 1024 * 1024;
/** Bytes read from the end of a file at first: trailers are a few hundred bytes. */
const TAIL_GUESS_BYTES = 4096;

interface TrailerJson {
  v: 1;
  key: string;
  size: number;
  etag: string;
  lastModified: number;
  expiresAt?: number;
  metadata: Record<string, string>;
}

/** The bytes appended after the body. */
export function encodeTrailer(meta: ObjectMeta): Buffer {
  const json: TrailerJson = {
    v: 1,
    key: meta.key,
    size: meta.size,
    etag: meta.etag,
    lastModified: meta.lastModified.getTime(),
    metadata: meta.metadata,
  };
  if (meta.expiresAt) json.expiresAt = meta.expiresAt.getTime();
  const body = Buffer.from(JSON.stringify(json), 'utf8');
  const footer = Buffer.alloc(FOOTER_BYTES);
  footer.writeUInt32BE(body.length, 0);
  MAGIC.copy(footer, 4);
  return Buffer.concat([body, footer]);
}

/**
 * Reads the trailer of an open object file of `fileBytes` bytes. Returns undefined when the file is not
 * a well-formed object (foreign file, truncated write from an older crash-unsafe tool, corruption).
 */
export async function readTrailer(file: FileHandle, fileBytes: number): Promise<ObjectMeta | undefined> {
  if (fileBytes < FOOTER_BYTES) return undefined;
  // One read of the tail usually holds the footer and the whole JSON: every open saves a round trip.
  const tail = Buffer.alloc(Math.min(fileBytes, TAIL_GUESS_BYTES));
  await readExactly(file, tail, fileBytes - tail.length);
  const footer = tail.subarray(tail.length - FOOTER_BYTES);
  if (!footer.subarray(4).equals(MAGIC)) return undefined;
  const jsonBytes = footer.readUInt32BE(0);
  if (jsonBytes > MAX_TRAILER_JSON || jsonBytes > fileBytes - FOOTER_BYTES) return undefined;
  let raw: Buffer;
  if (jsonBytes + FOOTER_BYTES <= tail.length) {
    raw = tail.subarray(tail.length - FOOTER_BYTES - jsonBytes, tail.length - FOOTER_BYTES);
  } else {
    raw = Buffer.alloc(jsonBytes);
    await readExactly(file, raw, fileBytes - FOOTER_BYTES - jsonBytes);
  }
  let json: Partial<TrailerJson>;
  try {
    json = JSON.parse(raw.toString('utf8')) as Partial<TrailerJson>;
  } catch {
    return undefined;
  }
  if (
    json.v !== 1 ||
    typeof json.key !== 'string' ||
    typeof json.etag !== 'string' ||
    typeof json.lastModified !== 'number' ||
    json.size !== fileBytes - FOOTER_BYTES - jsonBytes ||
    typeof json.metadata !== 'object' ||
    json.metadata === null
  ) {
    return undefined;
  }
  const meta: ObjectMeta = {
    key: json.key,
    size: json.size,
    etag: json.etag,
    lastModified: new Date(json.lastModified),
    metadata: json.metadata,
  };
  if (typeof json.expiresAt === 'number') meta.expiresAt = new Date(json.expiresAt);
  return meta;
}

async function readExactly(file: FileHandle, into: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await file.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new Error('unexpected end of cache file');
    done += bytesRead;
  }
}
