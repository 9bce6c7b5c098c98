/**
 * Runs git safely: a clean environment (no inherited GIT_* variables, no user/system config, so no
 * insteadOf loops or hooks from the host), its own process group so a timeout kills every child
 * (git spawns helpers such as git-remote-https and pack-objects), and a bounded stderr tail for errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { GitCommandError, TimeoutError, abortReason } from '../util/errors.js';

export interface GitOptions {
  /** Working directory (or the bare repository). */
  cwd?: string;
  /** Extra environment variables (only these and a minimal base reach git). */
  env?: Record<string, string>;
  /** Kill the whole process group after this many ms (default 10 minutes). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Bytes to write to stdin; a Readable is piped. */
  input?: string | Buffer | Readable;
}

const STDERR_TAIL_BYTES = 4096;
const DEFAULT_TIMEOUT_MS = 10 * 60_000;

/** The environment every git process gets: nothing from the host beyond PATH/HOME-independent basics. */
export function cleanGitEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C',
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_ASKPASS: '/bin/false',
    SSH_ASKPASS: '/bin/false',
    HOME: '/nonexistent',
    GIT_AUTHOR_NAME: 'cachew',
    GIT_AUTHOR_EMAIL: 'cachew@localhost',
    GIT_COMMITTER_NAME: 'cachew',
    GIT_COMMITTER_EMAIL: 'cachew@localhost',
    ...extra,
  };
}

/** A running git process whose stdout is consumed by the caller. */
export interface GitProcess {
  readonly child: ChildProcess;
  readonly stdout: Readable;
  readonly stdin: Writable;
  /** Resolves when git exits 0; rejects with GitCommandError / TimeoutError / AbortedError. */
  readonly done: Promise<void>;
  /** Kills the process group. */
  kill(): void;
}

/** Spawns `git args...` and hands back its streams; use for large outputs (packs, cat-file). */
export function spawnGit(args: readonly string[], options: GitOptions = {}): GitProcess {
  const child = spawn('git', args, {
    cwd: options.cwd,
    env: cleanGitEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true, // own process group: kill(-pid) reaches git's helpers too
  });
  let stderrTail = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
  });
  const kill = (): void => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  let failure: Error | undefined;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timer = setTimeout(() => {
    failure = new TimeoutError(`git ${args[0]} timed out after ${timeoutMs} ms`);
    kill();
  }, timeoutMs);
  timer.unref();
  const onAbort = (): void => {
    failure = abortReason(options.signal!);
    kill();
  };
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  // EPIPE on stdin is reported through the exit status instead.
  child.stdin!.on('error', () => {});
  if (options.input !== undefined) {
    if (typeof options.input === 'string' || Buffer.isBuffer(options.input)) child.stdin!.end(options.input);
    else options.input.pipe(child.stdin!);
  }

  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => {
      failure ??= err;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (failure) reject(failure);
      else if (code === 0) resolve();
      else reject(new GitCommandError(args, code, stderrTail));
    });
  });
  // Callers that only await stdout must not trigger unhandled rejections.
  done.catch(() => {});
  return { child, stdout: child.stdout!, stdin: child.stdin!, done, kill };
}

/** Runs git to completion and returns stdout as a string (for small outputs: refs, config, rev-parse). */
export async function runGit(args: readonly string[], options: GitOptions = {}): Promise<string> {
  const proc = spawnGit(args, options);
  const chunks: Buffer[] = [];
  proc.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  await proc.done;
  return Buffer.concat(chunks).toString('utf8');
}
