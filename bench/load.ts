/**
 * Section "load" (opt-in: BENCH_ONLY=load): many clients against one cachewd for a fixed time, a mix
 * of what CI fleets do: `git clone` and `git fetch` through the proxy, HEAD of the stable snapshot URL
 * and ranged GETs of the immutable one. Reports throughput, p50/p99 latency and errors per operation.
 * The repository is small on purpose: this measures the server under concurrency, not transfer.
 *
 *   BENCH_LOAD_CLIENTS  concurrent clients (default 200)
 *   BENCH_LOAD_SECONDS  duration (default 60)
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { snapshotsApiPath } from '../src/protocol/routes.js';
import { startUpstream } from '../test/harness/upstream.js';
import { startCachewd } from './cachewd.js';
import { fetchText } from './http-get.js';
import type { Row } from './table.js';
import { Cleanup, envInt, log, run, tempDir } from './util.js';

type Op = 'clone' | 'fetch' | 'HEAD stable' | 'ranged GET';
/** Out of 20 operations: 2 clones, 4 fetches, 7 HEADs, 7 ranged GETs. */
const MIX: Op[] = ['HEAD stable', 'ranged GET', 'fetch', 'HEAD stable', 'ranged GET', 'clone', 'HEAD stable', 'ranged GET', 'fetch', 'HEAD stable',
  'ranged GET', 'HEAD stable', 'ranged GET', 'fetch', 'HEAD stable', 'ranged GET', 'clone', 'HEAD stable', 'ranged GET', 'fetch'];
const RANGE_BYTES = 64 * 1024;

interface Tally {
  latencies: number[];
  errors: number;
  firstError?: string;
}

const gitEnv = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' };

export async function benchLoad(cleanup: Cleanup): Promise<Row[]> {
  const clients = envInt('BENCH_LOAD_CLIENTS', 200);
  const seconds = envInt('BENCH_LOAD_SECONDS', 60);
  const upstream = await startUpstream();
  cleanup.add('load upstream', () => upstream.stop());
  const files: Record<string, string> = { 'README.md': '# load\n' };
  for (let i = 0; i < 40; i++) files[`src/file-${i}.txt`] = randomBytes(3000).toString('base64');
  await upstream.createRepo('load/app', files);
  const state = await tempDir(cleanup, 'load-state');
  const work = await tempDir(cleanup, 'load-work');
  const cachewd = await startCachewd(
    ['--state', state, '--upstream', `${upstream.hostName}=${upstream.url}`, '--snapshot-interval', '0', '--log-level', 'info', '--max-connections', String(Math.max(1024, clients * 4))],
    cleanup,
  );
  const made = await fetchText(`${cachewd.url}${snapshotsApiPath(upstream.hostName, 'load/app')}`, 'POST', 600_000);
  if (made.status !== 200) throw new Error(`snapshot: ${made.status} ${made.body.slice(0, 200)}`);
  const snapshot = JSON.parse(made.body) as { url: string; size: number };
  const immutable = new URL(snapshot.url, cachewd.url).toString();
  const stable = `${cachewd.url}/git/${upstream.hostName}/load/app/snapshot.tar.zst`;
  const cloneUrl = `${cachewd.url}/git/${upstream.hostName}/load/app`;

  const tallies = new Map<Op, Tally>(MIX.map((op) => [op, { latencies: [], errors: 0 }]));
  const deadline = performance.now() + seconds * 1000;
  let serial = 0;

  const once = async (client: number, op: Op): Promise<void> => {
    const mine = path.join(work, `c${client}`);
    if (op === 'clone') {
      const dir = path.join(work, `clone-${serial++}`);
      try {
        await run('git', ['clone', '-q', cloneUrl, dir], { env: gitEnv, timeoutMs: 300_000 });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    } else if (op === 'fetch') {
      // Each client fetches into its own clone, made on its first fetch (untimed setup).
      await run('git', ['-C', mine, 'fetch', '-q', 'origin'], { env: gitEnv, timeoutMs: 300_000 });
    } else if (op === 'HEAD stable') {
      const res = await fetch(stable, { method: 'HEAD' });
      if (res.status !== 200) throw new Error(`HEAD ${res.status}`);
    } else {
      const start = Math.floor(Math.random() * Math.max(1, snapshot.size - RANGE_BYTES));
      const res = await fetch(immutable, { headers: { range: `bytes=${start}-${start + RANGE_BYTES - 1}` } });
      const body = await res.arrayBuffer();
      if (res.status !== 206 && res.status !== 200) throw new Error(`GET ${res.status}`);
      if (res.status === 206 && body.byteLength !== Math.min(RANGE_BYTES, snapshot.size - start)) throw new Error(`short range: ${body.byteLength}`);
    }
  };

  const client = async (index: number): Promise<void> => {
    let step = index % MIX.length;
    let cloned = false;
    while (performance.now() < deadline) {
      const op = MIX[step++ % MIX.length];
      if (op === 'fetch' && !cloned) {
        await mkdir(work, { recursive: true });
        await run('git', ['clone', '-q', cloneUrl, path.join(work, `c${index}`)], { env: gitEnv, timeoutMs: 300_000 }).catch(() => undefined);
        cloned = true;
      }
      const tally = tallies.get(op)!;
      const started = performance.now();
      try {
        await once(index, op);
        tally.latencies.push(performance.now() - started);
      } catch (err) {
        tally.errors++;
        tally.firstError ??= (err as Error).message.split('\n')[0].slice(0, 200);
      }
    }
  };

  log(`load: ${clients} clients for ${seconds} s against ${cachewd.url}`);
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
  const elapsed = (performance.now() - started) / 1000;
  await cachewd.stop();

  const rows: Row[] = [];
  let total = 0;
  let errors = 0;
  for (const [op, tally] of tallies) {
    total += tally.latencies.length;
    errors += tally.errors;
    rows.push({
      section: 'load',
      metric: `${op}: ops/s, p50 / p99`,
      ours: `${(tally.latencies.length / elapsed).toFixed(1)}/s, ${fmtMs(percentile(tally.latencies, 50))} / ${fmtMs(percentile(tally.latencies, 99))}`,
      baseline: '',
      ratio: '',
      aim: '0 errors',
      met: tally.errors === 0,
      note: `${tally.latencies.length} ok, ${tally.errors} errors${tally.firstError ? ` (first: ${tally.firstError})` : ''}`,
    });
  }
  rows.push({
    section: 'load',
    metric: `all, ${clients} clients, ${elapsed.toFixed(0)} s`,
    ours: `${(total / elapsed).toFixed(1)} ops/s`,
    baseline: '',
    ratio: '',
    aim: '0 errors',
    met: errors === 0,
    note: `${total} operations, ${errors} errors; snapshot ${snapshot.size} bytes`,
  });
  return rows;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}
