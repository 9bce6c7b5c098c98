/**
 * cachewd as a child process, compiled as `npm start` runs it (`node dist/cli/cachewd.js`), so the
 * server has its own event loop (the benchmark's clients do not steal its CPU time slices within one
 * loop) and its own memory, which `/proc/<pid>/status` reports. Run from source under tsx it held
 * ~26 MiB more at start (the loader and the compiled sources), which no user pays.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ensureBuilt } from './compiled-client.js';
import { Cleanup, killGroup } from './util.js';

export interface CachewdChild {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

const ROOT = path.resolve(import.meta.dirname, '..');

/** Starts cachewd on a free loopback port; resolves once it logged its URL. */
export async function startCachewd(args: string[], cleanup: Cleanup, startTimeoutMs = 60_000): Promise<CachewdChild> {
  await ensureBuilt();
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/cli/cachewd.js'), '--bind', '127.0.0.1:0', ...args], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const stop = cleanup.add(`cachewd ${child.pid}`, async () => {
    killGroup(child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child), 15_000);
    await exited;
    clearTimeout(timer);
  });

  const url = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`cachewd did not start within ${startTimeoutMs} ms: ${stderr.trim()}`)), startTimeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`cachewd exited (${code}) before listening: ${stderr.trim()}`));
    });
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as { msg?: string; url?: string };
          if (entry.msg === 'cachewd listening' && typeof entry.url === 'string') {
            clearTimeout(timer);
            resolve(entry.url);
          }
        } catch {
          // not a JSON log line
        }
      }
      // Keep only a bounded tail so a chatty server cannot grow this buffer.
      if (buffered.length > 65_536) buffered = buffered.slice(-65_536);
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  // From here on the log is only drained, so the pipe never fills and blocks the server.
  child.stdout.removeAllListeners('data');
  child.stdout.resume();
  if (child.pid === undefined) throw new Error('cachewd has no pid');
  return { url, pid: child.pid, stop };
}

export interface ProcMemory {
  rssBytes: number;
  hwmBytes: number;
}

/** VmRSS and VmHWM of a process, from /proc/<pid>/status. */
export async function procMemory(pid: number): Promise<ProcMemory> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (match === null) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(match[1]) * 1024;
  };
  return { rssBytes: field('VmRSS'), hwmBytes: field('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux `clear_refs` 5); false when not permitted. */
export async function resetPeak(pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Samples VmRSS every `intervalMs` until stopped; returns the highest sample. */
export function sampleRss(pid: number, intervalMs: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        peak = Math.max(peak, (await procMemory(pid)).rssBytes);
      } catch {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}
