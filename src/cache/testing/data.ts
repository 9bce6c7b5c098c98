/**
 * Test data helpers shared by the cache tests: deterministic pseudo-random bytes, generated streams
 * that are hashed as they are produced, and readers that hash instead of holding large bodies.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Cache, ObjectMeta } from '../cache.js';
import { writeStream } from '../write.js';

/** Lowercase sha256 hex of `data`. */
export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift32), so tests can produce distinct, incompressible data. */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 0x9e3779b9;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  for (; i < length; i++) out[i] = (x >>> (8 * (i % 4))) & 0xff;
  return out;
}

/**
 * A stream of `totalBytes` pseudo-random bytes generated on the fly in `chunkBytes` pieces; `digest()`
 * gives the sha256 of what was produced once it ended. Never holds more than one chunk.
 */
export function generatedStream(totalBytes: number, seed: number, chunkBytes = 1024 * 1024): Readable & { digest(): string } {
  const hash = createHash('sha256');
  let produced = 0;
  let index = 0;
  const stream = new Readable({
    read() {
      if (produced >= totalBytes) {
        this.push(null);
        return;
      }
      const length = Math.min(chunkBytes, totalBytes - produced);
      const chunk = pseudoRandomBytes(length, seed + index++ * 7919);
      produced += length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  let digest: string | undefined;
  return Object.assign(stream, {
    digest(): string {
      digest ??= hash.digest('hex');
      return digest;
    },
  });
}

/** Reads a stream whole (only for small test objects). */
export async function readAll(body: Readable | undefined): Promise<Buffer> {
  assert.ok(body, 'expected a body');
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** Hashes a stream without holding it; returns digest and length. */
export async function hashStream(body: Readable | undefined): Promise<{ sha256: string; size: number }> {
  assert.ok(body, 'expected a body');
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of body) {
    const bytes = chunk as Uint8Array;
    hash.update(bytes);
    size += bytes.length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Writes `data` under `key` with writeStream. */
export function put(cache: Cache, key: string, data: Buffer | string, options: Parameters<typeof writeStream>[3] = {}): Promise<ObjectMeta> {
  return writeStream(cache, key, [Buffer.from(data)], options);
}
