/**
 * Section 1, continued: memory while generating a snapshot of a tree with one very big file
 * (BENCH_BIG_FILE_MB, default 1024 MiB, half-compressible bytes, plus a few small files). Generation
 * must stream: no process may hold a file, a pack or a frame whole.
 *
 * The generation runs in a child process (generate-child.ts, started through tsx, whose loader is
 * part of the figure) with an empty layer cache; every 20 ms the resident sets of that process and of
 * every process below it (git rev-list / pack-objects / cat-file, zstd) are read from /proc and
 * summed. Reported: the peak of that sum, which is what the machine had to provide at once, and the
 * peaks of Node alone and of the largest single child.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { cleanGitEnv } from '../src/git/command.js';
import { Rng, binaryContent } from './content.js';
import type { Row } from './table.js';
import { MiB, fmtBytes, fmtSeconds, log, run, timed } from './util.js';

const SECTION = 'generation';
const AIM_BYTES = 256 * MiB;
const CHUNK = 8 * MiB;

export async function benchGenerationMemory(work: string, bigFileMb: number): Promise<Row[]> {
  const gitDir = path.join(work, 'big.git');
  await run('git', ['init', '-q', '--bare', '-b', 'main', gitDir], { env: cleanGitEnv(), timeoutMs: 60_000 });
  const made = await timed(() => importBigTree(gitDir, bigFileMb * MiB));
  const commit = (await run('git', ['rev-parse', 'refs/heads/main'], { cwd: gitDir, env: cleanGitEnv(), timeoutMs: 60_000 })).trim();
  log(`generation memory: repository with a ${bigFileMb} MiB file made in ${fmtSeconds(made.ms)}`);
  const out = path.join(work, 'big.tar.zst');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'generate-child.ts'), gitDir, commit, out, path.join(work, 'big-layers')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-4000)));
  const started = Date.now();
  const sampler = sampleTree(child.pid as number, 20);
  const [code] = (await once(child, 'close')) as [number | null];
  const ms = Date.now() - started;
  const peaks = await sampler.stop();
  await rm(out, { force: true });
  await rm(gitDir, { recursive: true, force: true });
  if (code !== 0) throw new Error(`generation of the big tree failed (${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const result = JSON.parse(stdout) as { size: number; frames: number };
  log(`generation memory: peak ${fmtBytes(peaks.total)} (node ${fmtBytes(peaks.node)}, largest child ${peaks.childName} ${fmtBytes(peaks.child)}) in ${fmtSeconds(ms)}`);
  return [
    {
      section: SECTION,
      metric: `peak RSS generating a tree with a ${bigFileMb} MiB file (node + git + zstd, summed)`,
      ours: fmtBytes(peaks.total),
      baseline: '',
      ratio: '',
      aim: '≤ 256 MiB',
      met: peaks.total <= AIM_BYTES,
      note: `node (with tsx) ${fmtBytes(peaks.node)}, largest child ${peaks.childName} ${fmtBytes(peaks.child)}; ${fmtSeconds(ms)}, archive ${fmtBytes(result.size)}, ${result.frames} frames; 20 ms samples`,
    },
  ];
}

/** One commit: `big.bin` of `bytes` half-compressible bytes and two small files, streamed into fast-import. */
async function importBigTree(gitDir: string, bytes: number): Promise<void> {
  // Kept as a pack, as a mirror's objects are (a clone always keeps its pack); a loose object would be
  // mapped whole by every git that reads it. Stored uncompressed: deflating 1 GiB here would dominate
  // the row's time, and generation recompresses it anyway.
  const config = ['fastimport.unpackLimit=0', 'core.compression=0', 'pack.compression=0'].flatMap((kv) => ['-c', kv]);
  const child = spawn('git', [...config, 'fast-import', '--quiet', '--done'], { cwd: gitDir, env: cleanGitEnv(), stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-2000)));
  const write = async (data: Buffer | string): Promise<void> => {
    if (!child.stdin.write(data)) await once(child.stdin, 'drain');
  };
  const rng = new Rng(1024);
  await write(`blob\nmark :1\ndata ${bytes}\n`);
  for (let done = 0; done < bytes; done += CHUNK) await write(binaryContent(rng, Math.min(CHUNK, bytes - done), 4));
  const small = (name: string, text: string): string => `M 100644 inline ${name}\ndata ${Buffer.byteLength(text)}\n${text}\n`;
  await write(`\ncommit refs/heads/main\ncommitter bench <bench@example.com> 1700000000 +0000\ndata 4\nbig\nM 100644 :1 big.bin\n`);
  await write(small('README.md', '# a tree with one big file\n') + small('src/main.c', 'int main(void) { return 0; }\n') + 'done\n');
  child.stdin.end();
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`git fast-import failed (${code}): ${stderr.trim()}`);
}

interface TreePeaks {
  /** Highest sum of the resident sets of the process and its descendants at one sample. */
  total: number;
  node: number;
  child: number;
  childName: string;
}

/** Samples the resident set of `pid` and all its descendants every `intervalMs` until stopped. */
function sampleTree(pid: number, intervalMs: number): { stop(): Promise<TreePeaks> } {
  const peaks: TreePeaks = { total: 0, node: 0, child: 0, childName: '' };
  let running = true;
  const loop = (async () => {
    while (running) {
      const procs = await processes();
      const tree = descendants(pid, procs);
      let total = 0;
      for (const p of tree) {
        total += p.rss;
        if (p.pid === pid) peaks.node = Math.max(peaks.node, p.rss);
        else if (p.rss > peaks.child) {
          peaks.child = p.rss;
          peaks.childName = p.name;
        }
      }
      peaks.total = Math.max(peaks.total, total);
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peaks;
    },
  };
}

interface Proc {
  pid: number;
  ppid: number;
  rss: number;
  name: string;
}

async function processes(): Promise<Proc[]> {
  const out: Proc[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = await readFile(`/proc/${name}/status`, 'utf8');
      const field = (key: string): string => new RegExp(`^${key}:\\s+(.*)$`, 'm').exec(status)?.[1] ?? '';
      out.push({ pid: Number(name), ppid: Number(field('PPid')), rss: (Number.parseInt(field('VmRSS'), 10) || 0) * 1024, name: await commandName(name, field('Name')) });
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** `git <subcommand>` for git (its `-c` options skipped), else the program name. */
async function commandName(pid: string, name: string): Promise<string> {
  if (name !== 'git') return name;
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '-c') i++;
    else if (argv[i] !== '') return `git ${argv[i]}`;
  }
  return name;
}

function descendants(root: number, procs: Proc[]): Proc[] {
  const byParent = new Map<number, Proc[]>();
  for (const p of procs) byParent.set(p.ppid, [...(byParent.get(p.ppid) ?? []), p]);
  const found = procs.filter((p) => p.pid === root);
  for (let i = 0; i < found.length; i++) found.push(...(byParent.get(found[i].pid) ?? []));
  return found;
}
