/**
 * A held benchmark environment for A/B measurements (not part of `npm run bench`): the bench
 * repository behind the test upstream, a cachewd (compiled, as `npm start` runs it) with its snapshot made, and the
 * restore section's throttled link (50 MB/s per connection, +10 ms each way) in front of it. Prints
 * one JSON line with the URLs and writes it to `$HOLD_JSON` (default `.bench/hold.json`), then holds
 * everything until SIGINT or SIGTERM.
 *
 *   node --import tsx bench/hold.ts &
 *   # then, e.g., interleaved pairs of two builds of the client against the same server:
 *   node dist/bundle/cachew.js git restore "$(jq -r .repoUrl .bench/hold.json)" /dev/shm/t --url "$(jq -r .link .bench/hold.json)"
 *
 * Why: this VM's speed drifts by ±20% within minutes, so only measurements taken side by side, in
 * alternation, against the same server compare (docs/benchmarks.md, "Restore experiments").
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { snapshotsApiPath } from '../src/protocol/routes.js';
import { startUpstream } from '../test/harness/upstream.js';
import { startCachewd } from './cachewd.js';
import { fetchText } from './http-get.js';
import { startLink } from './link.js';
import { ensureBenchRepo } from './repo.js';
import { Cleanup, tempDir } from './util.js';

const BENCH_DIR = path.resolve(import.meta.dirname, '..', '.bench');
const HOUR_MS = 3_600_000;

const cleanup = new Cleanup();
const stop = async (): Promise<void> => {
  await cleanup.runAll();
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

const repo = await ensureBenchRepo(Number(process.env.BENCH_SIZE_MB ?? 160), BENCH_DIR);
const upstream = await startUpstream();
cleanup.add('upstream', () => upstream.stop());
await symlink(repo.gitDir, path.join(upstream.root, 'bench.git'));
const state = await tempDir(cleanup, 'state');
const cachewd = await startCachewd(['--state', state, '--upstream', `${upstream.hostName}=${upstream.url}`, '--snapshot-interval', '0'], cleanup);
const made = JSON.parse((await fetchText(`${cachewd.url}${snapshotsApiPath(upstream.hostName, 'bench.git')}`, 'POST', HOUR_MS)).body) as { url: string };
const link = await startLink(cachewd.url, 50_000_000, 10, cleanup);
const held = {
  server: cachewd.url,
  link: link.url,
  repoUrl: `${upstream.url}/bench.git`,
  snapshot: new URL(made.url, cachewd.url).toString(),
  clone: `${cachewd.url}/git/${upstream.hostName}/bench.git`,
};
const out = process.env.HOLD_JSON ?? path.join(BENCH_DIR, 'hold.json');
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(held)}\n`);
console.log(JSON.stringify(held));
// Held until a signal: the servers above keep the event loop alive.
