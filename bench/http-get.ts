/**
 * HTTP clients of the serving, memory and redirect benchmarks: curl processes, because a client
 * written in Node is slower than the servers being compared (it measured 0.94× of nginx for a server
 * that curl shows at 0.17×). Each curl fetches its URL `repeat` times over one keep-alive connection,
 * bytes go to /dev/null, and every transfer's status and length are checked, so a fast wrong answer
 * cannot pass as throughput. Plus a small Node GET/POST for JSON answers.
 */
import http from 'node:http';
import { run } from './util.js';

/** Why curl cannot be used, or undefined when it can. */
export async function curlMissing(): Promise<string | undefined> {
  try {
    await run('curl', ['--version'], { timeoutMs: 10_000 });
    return undefined;
  } catch {
    return 'curl is not installed (apt-get install -y curl); the serving benchmarks use it as the client';
  }
}

export interface CurlJob {
  url: string;
  /** Inclusive byte range to request; the whole object when absent. */
  range?: { start: number; end: number };
  /** How many times the URL is fetched, one after the other on one connection. */
  repeat: number;
  /** Bytes each transfer must deliver. */
  bytes: number;
  /** Follow redirects (`-L`), for `--s3-redirect`. */
  follow?: boolean;
}

export interface TransferStats {
  bytes: number;
  ms: number;
}

/** One curl process running `job`; resolves with the bytes it received (all checked). */
export async function curlFetch(job: CurlJob): Promise<number> {
  const args = ['-sS', '--http1.1', '-w', '%{http_code} %{size_download}\\n'];
  if (job.range) args.push('-r', `${job.range.start}-${job.range.end}`);
  if (job.follow) args.push('-L');
  for (let i = 0; i < job.repeat; i++) args.push('-o', '/dev/null', job.url);
  const out = await run('curl', args, { timeoutMs: 10 * 60_000 });
  const expected = job.range ? 206 : 200;
  const lines = out.trim().split('\n');
  if (lines.length !== job.repeat) throw new Error(`curl ${job.url}: ${lines.length} transfers reported, expected ${job.repeat}`);
  let total = 0;
  for (const line of lines) {
    const [status, size] = line.split(' ').map(Number);
    if (status !== expected || size !== job.bytes) {
      throw new Error(`curl ${job.url}${job.range ? ` bytes=${job.range.start}-${job.range.end}` : ''}: HTTP ${status}, ${size} bytes; expected ${expected}, ${job.bytes}`);
    }
    total += size;
  }
  return total;
}

/** Runs the jobs as concurrent curl processes; the time is from the first start to the last exit. */
export async function curlParallel(jobs: CurlJob[]): Promise<TransferStats> {
  const started = performance.now();
  const counts = await Promise.all(jobs.map((job) => curlFetch(job)));
  return { bytes: counts.reduce((a, b) => a + b, 0), ms: performance.now() - started };
}

/** `parts` jobs that together fetch `size` bytes once per repetition, as contiguous ranges. */
export function splitIntoRanges(url: string, size: number, parts: number, repeat: number, follow = false): CurlJob[] {
  const step = Math.ceil(size / parts);
  const jobs: CurlJob[] = [];
  for (let start = 0; start < size; start += step) {
    const end = Math.min(size, start + step) - 1;
    jobs.push({ url, range: { start, end }, repeat, bytes: end - start + 1, follow });
  }
  return jobs;
}

/** GET (or POST) returning status and the body as text; for small JSON answers. */
export function fetchText(url: string, method: 'GET' | 'POST', timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
