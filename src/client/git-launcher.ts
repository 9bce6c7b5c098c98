/**
 * Starts the restore's git processes before they are needed, so that the restore's main thread does
 * not pay for starting them when it is large.
 *
 * Node starts a program with fork() + exec(), and fork() copies the page tables of the whole process,
 * blocking the event loop meanwhile. Measured here: spawn() blocks for 1.5 ms in a fresh process,
 * 8 ms with 100 MB held and 23 ms with 300 MB. At the end of a restore the client holds 130–170 MB
 * (zstd's window, the extraction thread, buffers not yet collected), and a CPU profile of the tail
 * showed 33 of 41 ms of one step in `spawn` (docs/restore.md, "The tail").
 *
 * So each git command whose arguments are known when the restore starts is *parked* then: a shell
 * (`sh -c 'read go && exec git …'`) is started while the process is small and waits on its stdin;
 * `run` with the same arguments, directory and environment writes `go` and the shell becomes git
 * (exec, no further fork). git only starts when released, so it sees the clone as it is by then. A
 * command nobody parked, or one run a second time, is started the usual way (runGit). `close` ends
 * every parked shell that was not released: it reads end-of-file and exits without running git.
 */
import { abortReason } from '../util/errors.js';
import { spawnProcess, type RunningProcess } from '../util/process.js';
import { gitProcessOptions, runGit, safeGitArgs } from './git.js';

/** Runs `exec git "$@"` only after reading the line `go`; end of input without it exits 1. */
const PARK_SCRIPT = 'IFS= read -r line && [ "$line" = go ] && exec git "$@"; exit 1';

interface Parked {
  process: RunningProcess;
  stdout: Buffer[];
}

export class GitLauncher {
  private readonly parked = new Map<string, Parked>();
  private closed = false;

  /** `signal` ends every parked process (and those released) when it aborts. */
  constructor(private readonly signal?: AbortSignal) {}

  /** Starts `git args...` in `cwd`, parked until `run` is called with the same arguments. */
  park(args: readonly string[], cwd: string, extraEnv?: Record<string, string>): void {
    const key = keyOf(args, cwd, extraEnv);
    if (this.closed || this.parked.has(key) || this.signal?.aborted) return;
    const process = spawnProcess('sh', ['-c', PARK_SCRIPT, 'cachew-git', ...safeGitArgs(args)], { ...gitProcessOptions(args, cwd, extraEnv), signal: this.signal });
    const stdout: Buffer[] = [];
    process.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    this.parked.set(key, { process, stdout });
  }

  /** Like runGit: the parked process if there is one for exactly this command, else a new one. */
  async run(args: readonly string[], cwd: string, signal?: AbortSignal, extraEnv?: Record<string, string>): Promise<string> {
    const key = keyOf(args, cwd, extraEnv);
    const parked = this.parked.get(key);
    if (parked === undefined) return runGit(args, cwd, signal, extraEnv);
    this.parked.delete(key);
    if (signal?.aborted) {
      parked.process.kill();
      await parked.process.exited;
      throw abortReason(signal);
    }
    const onAbort = (): void => parked.process.kill();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      parked.process.stdin.end('go\n');
      await parked.process.done.catch((err: unknown) => {
        throw signal?.aborted ? abortReason(signal) : err;
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    return Buffer.concat(parked.stdout).toString('utf8').replace(/\n$/, '');
  }

  /** Ends every process still parked (none runs git) and waits until they have exited. */
  async close(): Promise<void> {
    this.closed = true;
    const left = [...this.parked.values()];
    this.parked.clear();
    for (const { process } of left) process.stdin.end();
    await Promise.all(left.map(({ process }) => process.exited));
  }
}

/** Runs git commands with runGit's signature: runGit itself, or a GitLauncher's `run`. */
export type GitRunner = (args: readonly string[], cwd: string, signal?: AbortSignal, extraEnv?: Record<string, string>) => Promise<string>;

export function runnerOf(launcher: GitLauncher): GitRunner {
  return (args, cwd, signal, extraEnv) => launcher.run(args, cwd, signal, extraEnv);
}

function keyOf(args: readonly string[], cwd: string, extraEnv?: Record<string, string>): string {
  return JSON.stringify([args, cwd, extraEnv ?? {}]);
}
