/**
 * Runs git in a freshly restored clone. The client is a library that may run inside a git hook or a
 * CI job, so inherited `GIT_*` variables that point git elsewhere (GIT_DIR, GIT_INDEX_FILE,
 * GIT_WORK_TREE, GIT_OBJECT_DIRECTORY, GIT_CONFIG_PARAMETERS, ...) are removed: git must act on the
 * clone we name by `cwd`, nothing else. The user's own configuration still applies — it is their
 * clone, made as `git clone` would make it — so the variables that choose config files, identity, TLS
 * trust and tracing are kept (USER_SETTINGS).
 */
import { GitCommandError, abortReason } from '../util/errors.js';
import { runProcess } from '../util/process.js';

/** `GIT_*` variables that are the user's settings rather than a redirection of git's repository. */
const USER_SETTINGS = /^GIT_(CONFIG_GLOBAL|CONFIG_SYSTEM|CONFIG_NOSYSTEM|TEMPLATE_DIR|(AUTHOR|COMMITTER)_(NAME|EMAIL)|SSL_\w+|HTTP_\w+|CURL_VERBOSE|TRACE\w*|SSH|SSH_COMMAND|ASKPASS)$/;

function clientGitEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('GIT_') || USER_SETTINGS.test(name)) env[name] = value;
  }
  env.GIT_TERMINAL_PROMPT = '0';
  return env;
}

/**
 * Runs `git args...` in `cwd`; resolves with stdout (trimmed of the final newline). `extraEnv` is added
 * after the `GIT_*` scrub: how callers hand git configuration that must not show in argv (credentials).
 */
export async function runGit(args: readonly string[], cwd: string, signal?: AbortSignal, extraEnv?: Record<string, string>): Promise<string> {
  if (signal?.aborted) throw abortReason(signal);
  const stdout = await runProcess('git', safeGitArgs(args), { ...gitProcessOptions(args, cwd, extraEnv), signal, input: '' });
  return stdout.replace(/\n$/, '');
}

/** git's argv with the options every command in a restored clone gets. */
export function safeGitArgs(args: readonly string[]): string[] {
  // The clone's .git/config came from the server: never let it make our git run programs.
  return ['-c', 'core.fsmonitor=false', '-c', 'core.hooksPath=/dev/null', ...args];
}

/** Environment and error mapping of `git args...` in `cwd` (see runGit). */
export function gitProcessOptions(args: readonly string[], cwd: string, extraEnv?: Record<string, string>) {
  return {
    cwd,
    env: { ...clientGitEnv(), ...extraEnv },
    exitError: (code: number | null, _signal: NodeJS.Signals | null, stderrTail: string) => new GitCommandError(args, code, stderrTail),
    startError: (err: Error) => new GitCommandError(args, null, err.message, { cause: err }),
  };
}
