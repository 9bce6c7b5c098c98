/**
 * Runs git in a freshly restored clone. The client is a library that may run inside a git hook or a
 * CI job, so every inherited `GIT_*` variable (GIT_DIR, GIT_INDEX_FILE, GIT_WORK_TREE, ...) is removed:
 * git must act on the clone we name by `cwd`, nothing else. The user's own git config still applies —
 * it is their clone.
 */
import { spawn } from 'node:child_process';
import { GitCommandError, abortReason } from '../util/errors.js';

const STDERR_TAIL = 4096;

function clientGitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('GIT_')) env[name] = value;
  }
  env.GIT_TERMINAL_PROMPT = '0';
  return env;
}

/** Runs `git args...` in `cwd`; resolves with stdout (trimmed of the final newline). */
export function runGit(args: readonly string[], cwd: string, signal?: AbortSignal): Promise<string> {
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  return new Promise<string>((resolve, reject) => {
    // The clone's .git/config came from the server: never let it make our git run programs.
    const safeArgs = ['-c', 'core.fsmonitor=false', '-c', 'core.hooksPath=/dev/null', ...args];
    const child = spawn('git', safeArgs, { cwd, env: clientGitEnv(), stdio: ['ignore', 'pipe', 'pipe'], signal });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_TAIL);
    });
    child.on('error', (err) => {
      reject(signal?.aborted ? abortReason(signal) : new GitCommandError(args, null, err.message, { cause: err }));
    });
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(stdout).toString('utf8').replace(/\n$/, ''));
      else if (signal?.aborted) reject(abortReason(signal));
      else reject(new GitCommandError(args, code, stderr));
    });
  });
}
