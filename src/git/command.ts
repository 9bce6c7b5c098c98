/**
 * Runs git safely: a clean environment (no inherited GIT_* variables, no user/system config, so no
 * insteadOf loops or hooks from the host), its own process group so a timeout kills every child
 * (git spawns helpers such as git-remote-https and pack-objects), and a bounded stderr tail for errors.
 * The process mechanics are util/process.ts; this module owns git's environment and errors.
 */
import type { Readable } from 'node:stream';
import { GitCommandError, TimeoutError } from '../util/errors.js';
import { runProcess, spawnProcess, type ProcessOptions, type RunningProcess } from '../util/process.js';
import { childMarker } from '../util/orphans.js';

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
    // Lets a restarted cachewd find and kill children a crashed one left behind (util/orphans.ts).
    ...childMarker(),
    ...extra,
  };
}

/**
 * A running git process whose stdout is consumed by the caller; `done` rejects with GitCommandError /
 * TimeoutError / AbortedError, and kill() reaches the whole process group.
 */
export type GitProcess = RunningProcess;

/** How git is run: the clean environment, its own process group, git's errors. */
function gitProcessOptions(args: readonly string[], options: GitOptions): ProcessOptions {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return {
    cwd: options.cwd,
    env: cleanGitEnv(options.env),
    timeoutMs,
    signal: options.signal,
    input: options.input,
    processGroup: true, // kill(-pid) reaches git's helpers too
    exitError: (code, _signal, stderrTail) => new GitCommandError(args, code, stderrTail),
    startError: (err) => err,
    timeoutError: () => new TimeoutError(`git ${args[0]} timed out after ${timeoutMs} ms`),
  };
}

/** Spawns `git args...` and hands back its streams; use for large outputs (packs, cat-file). */
export function spawnGit(args: readonly string[], options: GitOptions = {}): GitProcess {
  return spawnProcess('git', args, gitProcessOptions(args, options));
}

/** Runs git to completion and returns stdout as a string (for small outputs: refs, config, rev-parse). */
export function runGit(args: readonly string[], options: GitOptions = {}): Promise<string> {
  return runProcess('git', args, gitProcessOptions(args, options));
}
