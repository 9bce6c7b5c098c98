/**
 * Small helpers shared by the benchmark sections: child processes with hard timeouts and group kill,
 * temp directories that are always removed, timing and medians, free ports and bounded waits.
 *
 * Everything a section starts is registered with a `Cleanup` so that Ctrl-C, a failed section or a
 * normal exit all leave no process or directory behind.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** LIFO list of undo actions; each runs once, failures are reported but do not stop the others. */
export class Cleanup {
  private readonly actions: Array<{ name: string; run: () => Promise<void> | void }> = [];

  add(name: string, run: () => Promise<void> | void): () => Promise<void> {
    const entry = { name, run };
    this.actions.push(entry);
    // The returned function runs this one action early (and forgets it).
    return async () => {
      const at = this.actions.indexOf(entry);
      if (at === -1) return;
      this.actions.splice(at, 1);
      await entry.run();
    };
  }

  async runAll(): Promise<void> {
    while (this.actions.length > 0) {
      const entry = this.actions.pop();
      if (entry === undefined) break;
      try {
        await entry.run();
      } catch (err) {
        process.stderr.write(`bench: cleanup of ${entry.name} failed: ${(err as Error).message}\n`);
      }
    }
  }
}

/** A temp directory under os.tmpdir() that `cleanup` removes. */
export async function tempDir(cleanup: Cleanup, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `cachew-bench-${prefix}-`));
  cleanup.add(`temp dir ${dir}`, () => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Kills a detached child's whole process group (pipelines, git's helpers). Safe to call twice. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Children of run()/shell() still running, so an interrupted benchmark can kill them on the way out. */
const running = new Set<ChildProcess>();

/** Kills every still-running run()/shell() child's process group. */
export function killRunning(): void {
  for (const child of running) killGroup(child);
  running.clear();
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** Bytes written to stdin, then closed (default: stdin is /dev/null). */
  input?: Buffer | string;
}

/**
 * Runs a command to completion in its own process group; resolves with stdout, rejects with the
 * stderr tail on a non-zero exit, and kills the group when `timeoutMs` passes.
 */
export function run(command: string, args: string[], options: RunOptions): Promise<string> {
  const spawnOptions: SpawnOptions = {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: true,
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  };
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, spawnOptions);
    running.add(child);
    const out: Buffer[] = [];
    let errTail = '';
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => {
      errTail = (errTail + chunk.toString('utf8')).slice(-2000);
    });
    if (options.input !== undefined) {
      child.stdin?.on('error', () => {});
      child.stdin?.end(options.input);
    }
    const timer = setTimeout(() => {
      killGroup(child);
      reject(new Error(`${command} ${args.join(' ').slice(0, 200)}: timed out after ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      running.delete(child);
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`${command} ${args.join(' ').slice(0, 200)} failed (${code ?? signal}): ${errTail.trim()}`));
    });
  });
}

/** `bash -o pipefail -c script`: for the shell pipelines the baselines are made of. */
export function shell(script: string, options: RunOptions): Promise<string> {
  return run('bash', ['-o', 'pipefail', '-c', script], options);
}

/** Single-quotes a string for bash. */
export function sq(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Milliseconds taken by `fn`. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await fn();
  return { ms: performance.now() - started, value };
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** An unused TCP port on 127.0.0.1 (bound then released; fine for a benchmark). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `probe` until it returns true or `timeoutMs` passes (then throws `what`). */
export async function waitUntil(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what}: not ready within ${timeoutMs} ms`);
}

/** Positive integer from the environment, or the default. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

export const MiB = 1024 * 1024;

export function fmtBytes(bytes: number): string {
  if (bytes >= 1024 * MiB) return `${(bytes / (1024 * MiB)).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

export function fmtSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
