/**
 * The one way cachew runs a program (git, zstd) on the server and in the client: streams for stdin and
 * stdout, a bounded stderr tail for error messages, a kill that reaches the whole process group when
 * asked (git starts helpers such as git-remote-https and pack-objects), a timeout, an AbortSignal, and
 * one promise that settles when the program has exited. Callers decide the environment and turn exit
 * codes into their own error types.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { CachewError, TimeoutError, abortReason } from './errors.js';

const STDERR_TAIL_BYTES = 4096;

export interface ProcessOptions {
  /** Working directory. */
  cwd?: string;
  /** The complete environment of the program (nothing is inherited unless the caller copies it). */
  env: NodeJS.ProcessEnv;
  /** Kill the program after this many ms (default: no limit). */
  timeoutMs?: number;
  /** Aborting kills the program; `done` then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Bytes for stdin (then closed), or a stream piped into it; absent = the caller writes `stdin`. */
  input?: string | Buffer | Readable;
  /** Start the program in its own process group, so a kill also reaches the processes it started. */
  processGroup?: boolean;
  /** The error for a non-zero exit or a death by signal (default: an internal CachewError). */
  exitError?: (code: number | null, signal: NodeJS.Signals | null, stderrTail: string) => Error;
  /** The error when the program cannot be started (default: an internal CachewError). */
  startError?: (err: Error) => Error;
  /** The error when `timeoutMs` passes (default: TimeoutError). */
  timeoutError?: () => Error;
}

/** A running program. */
export interface RunningProcess {
  readonly child: ChildProcess;
  readonly stdout: Readable;
  readonly stdin: Writable;
  /** Resolves when the program exits 0; rejects with the option's errors or the abort reason. */
  readonly done: Promise<void>;
  /** Kills the program (and its process group, if it has one) with SIGKILL; idempotent. */
  kill(): void;
}

/** Process groups started here and still running: killed when this process exits, however it exits. */
const liveGroups = new Set<number>();
process.once('exit', () => {
  for (const pgid of liveGroups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/** Starts `command args...`; its stdout is the caller's to consume. */
export function spawnProcess(command: string, args: readonly string[], options: ProcessOptions): RunningProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: options.processGroup === true,
  });
  const group = options.processGroup ? child.pid : undefined;
  if (group !== undefined) liveGroups.add(group);
  let stderrTail = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
  });
  const kill = (): void => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      if (options.processGroup) process.kill(-child.pid, 'SIGKILL');
      else child.kill('SIGKILL');
    } catch {
      // already gone
    }
  };
  let failure: Error | undefined;
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          failure = options.timeoutError?.() ?? new TimeoutError(`${command} timed out after ${options.timeoutMs} ms`);
          kill();
        }, options.timeoutMs);
  timer?.unref();
  const onAbort = (): void => {
    failure = abortReason(options.signal!);
    kill();
  };
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  // EPIPE on stdin (the program exited early) is reported through the exit status instead.
  child.stdin!.on('error', () => undefined);
  if (options.input !== undefined) {
    if (typeof options.input === 'string' || Buffer.isBuffer(options.input)) child.stdin!.end(options.input);
    else options.input.pipe(child.stdin!);
  }

  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err) => {
      failure ??= options.startError?.(err) ?? new CachewError('internal', `cannot run ${command}: ${err.message}`, { cause: err });
    });
    child.on('close', (code, signal) => {
      if (group !== undefined) liveGroups.delete(group);
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (failure) reject(failure);
      else if (code === 0) resolve();
      else {
        const lastLine = stderrTail.trim().split('\n').pop() ?? '';
        reject(options.exitError?.(code, signal, stderrTail) ?? new CachewError('internal', `${command} failed (${code ?? signal}): ${lastLine}`));
      }
    });
  });
  // Callers that only consume stdout must not cause unhandled rejections; they await `done` later.
  done.catch(() => undefined);
  return { child, stdout: child.stdout!, stdin: child.stdin!, done, kill };
}

/** Runs a program to completion and returns its stdout (for small outputs). */
export async function runProcess(command: string, args: readonly string[], options: ProcessOptions): Promise<string> {
  const proc = spawnProcess(command, args, options);
  const chunks: Buffer[] = [];
  proc.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  await proc.done;
  return Buffer.concat(chunks).toString('utf8');
}
