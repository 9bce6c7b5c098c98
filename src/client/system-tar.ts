/**
 * The system `tar` as the writer of extracted files. GNU tar and bsdtar (libarchive) write a tree of
 * thousands of small files several times faster than Node can, because every open/write/chmod/utimes/
 * close is a direct system call instead of a round trip through libuv's thread pool (a profile of the
 * former Node writer showed the main thread busy with exactly those round trips).
 *
 * It only ever reads the canonical stream tar-filter.ts produces (admitted entries, headers we wrote),
 * and it runs with flags that make it refuse, not replace, anything that already exists.
 */
import type { Writable } from 'node:stream';
import { CachewError } from '../util/errors.js';
import { runProcess, spawnProcess } from '../util/process.js';

export type TarFlavour = 'gnu' | 'bsd';

let flavour: Promise<TarFlavour> | undefined;

/** Which tar `tar` is, detected once per process from `tar --version`. */
export function detectTar(): Promise<TarFlavour> {
  flavour ??= runProcess('tar', ['--version'], { env: tarEnv(), timeoutMs: 10_000, startError: (err) => err }).then(
    (stdout) => {
      if (/GNU tar/.test(stdout)) return 'gnu';
      if (/bsdtar|libarchive/.test(stdout)) return 'bsd';
      throw new CachewError('internal', `unsupported tar: ${stdout.split('\n')[0]} (GNU tar or bsdtar is required)`);
    },
    (err: Error) => {
      flavour = undefined; // let a later restore retry once tar is installed
      throw new CachewError('internal', `cannot run tar (GNU tar or bsdtar is required): ${err.message}`, { cause: err });
    },
  );
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
  // The head of stderr: tar's first complaint is the cause, what follows is usually its consequences.
  const tar = spawnProcess('tar', extractArgs(kind, root), { env: tarEnv(), stderrKeep: 'head' });
  tar.stdout.resume(); // `-x` without `-v` prints nothing; never let a full pipe stall it
  return {
    stdin: tar.stdin,
    exited: tar.exited.then(({ code, signal, stderr, spawnError }) =>
      spawnError ? { code: null, signal: null, stderr: `cannot run tar: ${spawnError.message}` } : { code, signal, stderr },
    ),
    kill: tar.kill,
  };
}
