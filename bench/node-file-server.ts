/**
 * The Node ceiling of the serving benchmark: the smallest reasonable Node file server (one file,
 * single byte ranges, `fs.createReadStream` with 4 MiB reads piped into the response). Whatever cachewd
 * loses against it is ours; whatever it loses against nginx (sendfile: no copy through user space) is
 * Node's. Run as its own process: `node --import tsx bench/node-file-server.ts FILE`; it prints
 * `listening http://127.0.0.1:PORT` once ready.
 *
 * `startNodeFileServer` starts it as a child of the benchmark.
 */
import { spawn } from 'node:child_process';
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Cleanup, killGroup } from './util.js';

export interface NodeFileServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

function serve(file: string): void {
  const size = statSync(file).size;
  const server = http.createServer((req, res) => {
    const match = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    const start = match ? Number(match[1]) : 0;
    const end = match ? Math.min(size - 1, Number(match[2])) : size - 1;
    res.writeHead(match ? 206 : 200, {
      'content-length': end - start + 1,
      ...(match ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    createReadStream(file, { start, end, highWaterMark: 4 * 1024 * 1024 }).pipe(res);
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`listening http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
  });
}

/** Starts the ceiling server on `file` as a child process (stopped by `cleanup` at the latest). */
export async function startNodeFileServer(file: string, cleanup: Cleanup): Promise<NodeFileServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, file], { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const stop = cleanup.add('node file server', async () => {
    killGroup(child, 'SIGKILL');
    await exited;
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('the Node file server did not start within 30 s')), 30_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const match = /listening (\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`the Node file server exited (${code})`));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  child.stdout.removeAllListeners('data');
  child.stdout.resume();
  if (child.pid === undefined) throw new Error('the Node file server has no pid');
  return { url, pid: child.pid, stop };
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) serve(process.argv[2]);
