/** Small HTTP helpers for end-to-end tests (fetch wrappers that hash bodies instead of keeping them). */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface Fetched {
  status: number;
  headers: Headers;
  body: Buffer;
}

/** fetch + read the whole body (only for small responses in tests). */
export async function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Fetched> {
  const res = await fetch(url, { method, headers });
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, body };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Downloads a URL to a file and returns its sha256. */
export async function download(url: string, file: string): Promise<{ status: number; headers: Headers; sha256: string }> {
  const res = await fetch(url);
  const hash = createHash('sha256');
  if (!res.body) return { status: res.status, headers: res.headers, sha256: hash.digest('hex') };
  const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
  body.on('data', (chunk: Buffer) => hash.update(chunk));
  await pipeline(body, createWriteStream(file));
  return { status: res.status, headers: res.headers, sha256: hash.digest('hex') };
}

/** Polls `check` every `intervalMs` until it returns a value, at most `timeoutMs`. */
export async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
