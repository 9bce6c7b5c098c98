/**
 * `npm run bench`: measures cachew against baselines run in the same process on the same machine and
 * prints ratios (nothing here asserts a timing; it is not a test).
 *
 *   BENCH_SIZE_MB  working-tree size of the synthetic repository (default 160: ≥ 10k files, 321 commits; cached in .bench/)
 *   BENCH_RUNS     runs per measurement; medians are reported (default 3)
 *   BENCH_ONLY     comma-separated sections to run (generation,serving,memory,restore,redirect,refs; default all);
 *                  `load` (200 clients for 60 s, see bench/load.ts) runs only when named here
 *   BENCH_TAGS, BENCH_BRANCHES  shape of the refs section's repository (default 2000 tags, 50 branches)
 *   BENCH_LINK_MBPS, BENCH_LINK_LATENCY_MS  the restore section's throttled link (default 50 MB/s
 *                  per connection, 10 ms each way)
 *
 * Sections: 1 generation (generateSnapshot vs clone + tar | zstd), 2 serving (cachewd's memory and
 * disk tiers vs nginx and a minimal Node file server, curl as the client, 1 stream and 4 ranges, MB/s
 * and server CPU s/GB), 3 memory (cachewd RSS under 8 concurrent curl downloads), 4 restore (restore()
 * vs git clone through cachewd vs curl | zstd | tar), 5 redirect (--s3-redirect with moto as S3), 6 refs (the cost of the
 * branches and tags after the archive, on its own repository with many tags).
 * Needs git and zstd; curl, nginx and moto_server for their sections (a missing one is reported, never
 * installed). A section that cannot run becomes a "skipped" row with
 * the reason. The table also goes to .bench/last-run.md for docs/benchmarks.md.
 */
import { symlink, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { snapshotsApiPath } from '../src/protocol/routes.js';
import { startUpstream } from '../test/harness/upstream.js';
import { startCachewd } from './cachewd.js';
import { benchGeneration } from './generation.js';
import { benchLoad } from './load.js';
import { fetchText } from './http-get.js';
import { benchMemory } from './memory.js';
import { findNginx } from './nginx.js';
import { ensureBenchRepo, type BenchRepo } from './repo.js';
import { benchRedirect } from './redirect.js';
import { benchRefs } from './refs.js';
import { benchRestore } from './restore.js';
import { benchServing, type ServedSnapshot } from './serving.js';
import { markdownTable, skippedRow, textTable, type Row } from './table.js';
import { Cleanup, envInt, fmtBytes, fmtSeconds, killRunning, log, run, tempDir, timed } from './util.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const CACHE = path.join(ROOT, '.bench');
const REPO = 'bench.git';

async function version(command: string, args: string[]): Promise<string> {
  try {
    const out = await run(command, args, { timeoutMs: 10_000 });
    return out.trim().split('\n')[0];
  } catch (err) {
    // nginx -v prints to stderr; run() only returns stdout, so its message carries the version.
    const message = (err as Error).message;
    return /version[: ]+\S+/i.exec(message)?.[0] ?? 'unavailable';
  }
}

async function machineInfo(): Promise<string[]> {
  const nginx = await findNginx();
  return [
    `date: ${new Date().toISOString()}`,
    `cpu: ${os.cpus()[0]?.model ?? 'unknown'}; nproc ${os.availableParallelism()}; load average at start ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `memory: ${fmtBytes(os.totalmem())}; node ${process.version}; ${await version('git', ['--version'])}; zstd ${await version('zstd', ['-q', '-V'])}`,
    `nginx: ${nginx === undefined ? 'not installed' : (await run('bash', ['-c', `${nginx} -v 2>&1`], { timeoutMs: 10_000 })).trim()}`,
  ];
}

async function main(cleanup: Cleanup): Promise<void> {
  const sizeMb = envInt('BENCH_SIZE_MB', 160);
  const runs = envInt('BENCH_RUNS', 3);
  const only = (process.env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const info = await machineInfo();
  for (const line of info) log(line);
  await mkdir(CACHE, { recursive: true });
  const rows: Row[] = [];
  if (only.includes('load')) {
    // Opt-in: a minute of 200 clients is not part of the default run. It brings its own small repository.
    log('section load');
    try {
      rows.push(...(await benchLoad(cleanup)));
    } catch (err) {
      log(`section load failed: ${(err as Error).stack ?? String(err)}`);
      rows.push(skippedRow('load', 'all', `failed: ${(err as Error).message}`));
    }
    if (only.length === 1) return report(info, 'repository: (load section only; its own small repository)', rows);
  }
  const repo = await ensureBenchRepo(sizeMb, CACHE);
  const repoLine = `repository: ${repo.files} files, ${fmtBytes(repo.treeBytes)} working tree, ${repo.commits} commits, ${fmtBytes(repo.packBytes)} packed; ${runs} runs per measurement (medians)`;
  log(repoLine);

  const section: Section = async (name, fn) => {
    if (exiting || (only.length > 0 && name !== 'snapshot' && !only.includes(name))) return;
    log(`section ${name}`);
    try {
      rows.push(...(await fn()));
    } catch (err) {
      log(`section ${name} failed: ${(err as Error).stack ?? String(err)}`);
      rows.push(skippedRow(name, 'all', `failed: ${(err as Error).message}`));
    }
  };

  await section('generation', () => benchGeneration(repo, runs, cleanup));
  const selected = (name: string): boolean => only.length === 0 || only.includes(name);
  if (only.length === 0 || only.some((name) => name !== 'generation' && name !== 'load')) await serverSections(repo, runs, rows, section, selected, cleanup);

  await report(info, repoLine, rows);
}

/** Prints the table and writes it to .bench/last-run.md (for docs/benchmarks.md). */
async function report(info: string[], repoLine: string, rows: Row[]): Promise<void> {
  const table = textTable(rows);
  process.stdout.write(`\n${info.join('\n')}\n${repoLine}\n\n${table}\n`);
  const notes = rows.filter((r) => r.note !== undefined).map((r) => `- ${r.section} / ${r.metric}: ${r.note}`);
  const markdown = [...info.map((l) => `- ${l}`), `- ${repoLine}`, '', markdownTable(rows), '', ...notes, ''].join('\n');
  // An interrupted run's rows are partly failures caused by the interrupt: keep the last real table.
  if (exiting) return;
  await writeFile(path.join(CACHE, 'last-run.md'), markdown);
  log(`table written to ${path.join(CACHE, 'last-run.md')}`);
}

type Section = (name: string, fn: () => Promise<Row[]>) => Promise<void>;

/** cachewd's default --memory-max-object-mb (32) in bytes: bigger blobs are served by the disk tier. */
const DEFAULT_MEMORY_MAX_OBJECT_BYTES = 32 * 1024 * 1024;
/** Memory tier settings that hold the bench snapshot, for the memory-tier rows. */
const BIG_MEMORY_TIER = ['--memory-limit-mb', '1024', '--memory-max-object-mb', '1024'];

/** Everything that needs an upstream and a running cachewd: snapshot, serving, memory, restore. */
async function serverSections(
  repo: BenchRepo,
  runs: number,
  rows: Row[],
  section: Section,
  selected: (name: string) => boolean,
  cleanup: Cleanup,
): Promise<void> {
  const upstream = await startUpstream();
  cleanup.add('upstream', () => upstream.stop());
  // The harness serves <root>/<name>.git; point it at the cached repository instead of copying it.
  await symlink(repo.gitDir, path.join(upstream.root, REPO));
  const state = await tempDir(cleanup, 'state');
  const serverArgs = ['--state', state, '--upstream', `${upstream.hostName}=${upstream.url}`, '--snapshot-interval', '0', '--log-level', 'info'];
  let cachewd = await startCachewd(serverArgs, cleanup);
  log(`cachewd (pid ${cachewd.pid}) at ${cachewd.url}`);
  const refsTarget = { serverUrl: cachewd.url, upstreamUrl: upstream.url, upstreamHost: upstream.hostName, upstreamRoot: upstream.root };
  await section('refs', () => benchRefs(refsTarget, runs, cleanup));

  let snapshot: ServedSnapshot | undefined;
  await section('snapshot', async () => {
    const api = `${cachewd.url}${snapshotsApiPath(upstream.hostName, REPO)}`;
    const { ms, value } = await timed(() => fetchText(api, 'POST', 3_600_000));
    if (value.status !== 200) throw new Error(`POST ${api}: ${value.status} ${value.body.slice(0, 200)}`);
    const made = JSON.parse(value.body) as { commit: string; digest: string; size: number; url: string };
    if (made.commit !== repo.head) throw new Error(`snapshot of ${made.commit}, expected ${repo.head}`);
    snapshot = { url: new URL(made.url, cachewd.url).toString(), size: made.size, digest: made.digest };
    return [
      {
        section: 'snapshot',
        metric: 'first snapshot via POST API (mirror clone + generate)',
        ours: fmtSeconds(ms),
        baseline: '',
        ratio: '',
        aim: '',
        note: `${fmtBytes(made.size)}; one run (the second call returns the existing snapshot)`,
      },
    ];
  });
  if (snapshot === undefined) {
    for (const name of ['serving', 'memory', 'restore', 'redirect']) rows.push(skippedRow(name, 'all', 'no snapshot (see the snapshot row)'));
    await cachewd.stop();
    return;
  }

  const served = snapshot;
  // With default settings a snapshot over 32 MiB is never copied into the memory tier: disk serves it.
  const firstTier = served.size <= DEFAULT_MEMORY_MAX_OBJECT_BYTES ? 'memory tier' : 'disk tier (default settings)';
  await section('serving', () => benchServing(served, { label: firstTier, url: served.url, pid: cachewd.pid }, runs, cleanup));
  await section('memory', () => benchMemory(cachewd.pid, served, runs, 'default settings'));
  const target = {
    serverUrl: cachewd.url,
    repoUrl: `${upstream.url}/${REPO}`,
    proxyCloneUrl: `${cachewd.url}/git/${upstream.hostName}/${REPO}`,
    head: repo.head,
    snapshot: served,
    treeBytes: repo.treeBytes,
  };
  await section('restore', () => benchRestore(target, runs, cleanup));
  // Again with a memory tier big enough to hold the snapshot (same state dir): the first full read
  // copies the blob into it, which then answers.
  if (selected('serving') || selected('memory')) {
    await cachewd.stop();
    cachewd = await startCachewd([...serverArgs, ...BIG_MEMORY_TIER], cleanup);
    const inMemory = { ...served, url: new URL(new URL(served.url).pathname, cachewd.url).toString() };
    const memoryTier = cachewd;
    const label = served.size <= DEFAULT_MEMORY_MAX_OBJECT_BYTES ? 'memory tier (1 GiB)' : 'memory tier (--memory-max-object-mb 1024)';
    await section('serving', () => benchServing(inMemory, { label, url: inMemory.url, pid: memoryTier.pid }, runs, cleanup));
    await section('memory', () => benchMemory(memoryTier.pid, inMemory, runs, 'snapshot held in the memory tier', false));
  }
  await cachewd.stop();
  const redirectTarget = { upstreamName: upstream.hostName, upstreamUrl: upstream.url, repo: REPO, head: repo.head };
  await section('redirect', () => benchRedirect(redirectTarget, runs, cleanup));
}

const cleanup = new Cleanup();
/** Set once the run is ending (normally or by a signal). */
let exiting = false;
const finish = (code: number): void => {
  if (exiting) return;
  exiting = true;
  killRunning();
  // Exit explicitly: keep-alive sockets or a stuck child must not keep the benchmark alive.
  void cleanup.runAll().finally(() => process.exit(code));
};
process.on('SIGINT', () => finish(130));
process.on('SIGTERM', () => finish(143));
main(cleanup).then(
  () => finish(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    finish(1);
  },
);
