/**
 * Download loops for the serving and memory benchmarks: Node `http` with a keep-alive agent, bytes
 * read and discarded (only counted), every response checked for the status and length it must have,
 * so a fast wrong answer cannot pass as throughput.
 */
import http from 'node:http';

export interface DownloadStats {
  bytes: number;
  ms: number;
  requests: number;
}

/** Reads a whole response body, discarding it; resolves with the byte count. */
function drain(res: http.IncomingMessage): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    res.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    res.on('end', () => resolve(bytes));
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('response aborted')));
  });
}

function get(url: string, agent: http.Agent, headers: Record<string, string>, timeoutMs: number): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, headers, timeout: timeoutMs }, resolve);
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no data for ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/**
 * Downloads `url` (of known `size`) as `chunkSize` Range requests, `parallel` at a time over one
 * keep-alive agent. Throws unless every chunk is a 206 of exactly the requested length.
 */
export async function rangedDownload(url: string, size: number, parallel: number, chunkSize: number): Promise<DownloadStats> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: parallel });
  const started = performance.now();
  let next = 0;
  let bytes = 0;
  let requests = 0;
  const worker = async (): Promise<void> => {
    while (next < size) {
      const start = next;
      const end = Math.min(size, start + chunkSize) - 1;
      next = end + 1;
      const res = await get(url, agent, { range: `bytes=${start}-${end}` }, 60_000);
      requests += 1;
      if (res.statusCode !== 206) {
        res.resume();
        throw new Error(`GET ${url} bytes=${start}-${end}: status ${res.statusCode}, expected 206`);
      }
      const got = await drain(res);
      if (got !== end - start + 1) throw new Error(`GET ${url} bytes=${start}-${end}: got ${got} bytes`);
      bytes += got;
    }
  };
  try {
    await Promise.all(Array.from({ length: parallel }, () => worker()));
  } finally {
    agent.destroy();
  }
  if (bytes !== size) throw new Error(`ranged download of ${url}: ${bytes} of ${size} bytes`);
  return { bytes, ms: performance.now() - started, requests };
}

/** `count` concurrent full GETs of `url`; each must be a 200 of `size` bytes. */
export async function concurrentFullDownloads(url: string, size: number, count: number): Promise<DownloadStats> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: count });
  const started = performance.now();
  try {
    const sizes = await Promise.all(
      Array.from({ length: count }, async () => {
        const res = await get(url, agent, {}, 60_000);
        if (res.statusCode !== 200) {
          res.resume();
          throw new Error(`GET ${url}: status ${res.statusCode}, expected 200`);
        }
        return drain(res);
      }),
    );
    for (const got of sizes) if (got !== size) throw new Error(`GET ${url}: got ${got} of ${size} bytes`);
    return { bytes: size * count, ms: performance.now() - started, requests: count };
  } finally {
    agent.destroy();
  }
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
