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

/** How much of a program's stderr is kept for its error message. */
const STDERR_KEPT_BYTES = 4096;

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

/** How a program ended. */
export interface ProcessExit {
  /** Exit code (null when a signal ended it or it never started). */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The tail of its stderr, at most 4 KiB. */
  stderr: string;
  /** Set when the program could not be started at all. */
  spawnError?: Error;
}

/** A running program. */
export interface RunningProcess {
  readonly child: ChildProcess;
  readonly stdout: Readable;
  readonly stdin: Writable;
  /** Resolves when the program exits 0; rejects with the option's errors or the abort reason. */
  readonly done: Promise<void>;
  /**
   * Settles, never rejects, when the program is gone and its stdio closed: for callers that judge the
   * exit status themselves (`done` turns the same status into an error).
   */
  readonly exited: Promise<ProcessExit>;
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
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    // The tail: git and zstd say what went wrong last.
    stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_KEPT_BYTES);
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

  let spawnError: Error | undefined;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.on('error', (err) => {
      spawnError ??= err;
    });
    // 'close' also follows a failed start ('error'), so this settles exactly once either way.
    child.on('close', (code, signal) => {
      if (group !== undefined) liveGroups.delete(group);
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(spawnError ? { code: null, signal: null, stderr, spawnError } : { code, signal, stderr });
    });
  });
  const done = exited.then(({ code, signal, spawnError: startFailure }) => {
    if (failure) throw failure;
    if (startFailure) throw options.startError?.(startFailure) ?? new CachewError('internal', `cannot run ${command}: ${startFailure.message}`, { cause: startFailure });
    if (code === 0) return;
    const lastLine = stderr.trim().split('\n').pop() ?? '';
    throw options.exitError?.(code, signal, stderr) ?? new CachewError('internal', `${command} failed (${code ?? signal}): ${lastLine}`);
  });
  // Callers that only consume stdout must not cause unhandled rejections; they await `done` later.
  done.catch(() => undefined);
  return { child, stdout: child.stdout!, stdin: child.stdin!, done, exited, kill };
}

/** Runs a program to completion and returns its stdout (for small outputs). */
export async function runProcess(command: string, args: readonly string[], options: ProcessOptions): Promise<string> {
  const proc = spawnProcess(command, args, options);
  const chunks: Buffer[] = [];
  proc.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  await proc.done;
  return Buffer.concat(chunks).toString('utf8');
}
