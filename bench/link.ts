/**
 * A throttled link for the restore benchmark: test/harness/throttle-proxy.ts in a child process in
 * front of cachewd, capping each connection at a fixed rate with added latency, as an S3 or CDN
 * stream would. Stopped by the benchmark's Cleanup.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Cleanup, killGroup } from './util.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const START_TIMEOUT_MS = 60_000;

export interface Link {
  /** `http://127.0.0.1:PORT`: requests sent here reach the target through the throttle. */
  url: string;
  stop(): Promise<void>;
}

/** Starts a proxy to `target` capped at `bytesPerSecond` per connection, `latencyMs` each way. */
export async function startLink(target: string, bytesPerSecond: number, latencyMs: number, cleanup: Cleanup): Promise<Link> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'test/harness/throttle-proxy-process.ts'), target, String(bytesPerSecond), String(latencyMs)],
    { cwd: ROOT, detached: true, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  const stop = cleanup.add(`throttle proxy ${child.pid}`, async () => {
    killGroup(child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child), 5_000);
    await exited;
    clearTimeout(timer);
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`throttle proxy did not start: ${stderr}`)), START_TIMEOUT_MS);
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const nl = buffered.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      try {
        resolve((JSON.parse(buffered.slice(0, nl)) as { url: string }).url);
      } catch (err) {
        reject(err as Error);
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`throttle proxy exited (${code}): ${stderr}`));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  child.stdout.resume();
  return { url, stop };
}
