/**
 * The system `tar` as the writer of extracted files. GNU tar and bsdtar (libarchive) write a tree of
 * thousands of small files several times faster than Node can, because every open/write/chmod/utimes/
 * close is a direct system call instead of a round trip through libuv's thread pool (a profile of the
 * former Node writer showed the main thread busy with exactly those round trips).
 *
 * It only ever reads the canonical stream tar-filter.ts produces (admitted entries, headers we wrote),
 * and it runs with flags that make it refuse, not replace, anything that already exists.
 */
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { CachewError } from '../util/errors.js';

const STDERR_HEAD = 4096;

export type TarFlavour = 'gnu' | 'bsd';

let flavour: Promise<TarFlavour> | undefined;

/** Which tar `tar` is, detected once per process from `tar --version`. */
export function detectTar(): Promise<TarFlavour> {
  flavour ??= new Promise<TarFlavour>((resolve, reject) => {
    execFile('tar', ['--version'], { timeout: 10_000, env: tarEnv() }, (err, stdout) => {
      if (err) {
        flavour = undefined; // let a later restore retry once tar is installed
        reject(new CachewError('internal', `cannot run tar (GNU tar or bsdtar is required): ${err.message}`, { cause: err }));
        return;
      }
      if (/GNU tar/.test(stdout)) resolve('gnu');
      else if (/bsdtar|libarchive/.test(stdout)) resolve('bsd');
      else reject(new CachewError('internal', `unsupported tar: ${stdout.split('\n')[0]} (GNU tar or bsdtar is required)`));
    });
  });
  return flavour;
}

/**
 * Flags for extracting stdin into `root`. Both: never restore owners, never replace an existing file
 * (`-k`: the filter already refuses duplicates; this is the writer's own guard). bsdtar's defaults
 * also refuse `..` and writing through symlinks; GNU tar defers symlinks whose target is absolute or
 * contains `..` until the end of the extraction, so no entry can be written through them either.
 */
function extractArgs(kind: TarFlavour, root: string): string[] {
  const common = ['-x', '-f', '-', '-C', root, '--no-same-owner', '-k'];
  // Snapshot mtimes are commit times; a commit dated in the future is not worth a warning.
  return kind === 'gnu' ? [...common, '--warning=no-timestamp'] : common;
}

/** Byte-for-byte names and stable English messages, whatever the user's locale. */
function tarEnv(): NodeJS.ProcessEnv {
  return { ...process.env, LC_ALL: 'C' };
}

/** A running `tar -x` reading from `stdin`. */
export interface TarProcess {
  stdin: Writable;
  /** Settles (never rejects) when tar is gone, with its exit status and the tail of its stderr. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  /** SIGKILL, if still running. */
  kill(): void;
}

/** Starts `tar -x` into the existing directory `root`. */
export async function startTar(root: string): Promise<TarProcess> {
  const kind = await detectTar();
  const child: ChildProcessByStdio<Writable, null, Readable> = spawn('tar', extractArgs(kind, root), {
    stdio: ['pipe', 'ignore', 'pipe'],
    env: tarEnv(),
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    // The head: tar's first complaint is the cause, what follows is usually its consequences.
    if (stderr.length < STDERR_HEAD) stderr += chunk.toString('utf8').slice(0, STDERR_HEAD - stderr.length);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    child.on('error', (err) => resolve({ code: null, signal: null, stderr: `cannot run tar: ${err.message}` }));
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  return {
    stdin: child.stdin,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
