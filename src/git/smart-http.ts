/**
 * git's smart HTTP protocol served from a local mirror (the git side; src/http/routes/git.ts does the
 * HTTP side). Mirrors what `git http-backend` does for upload-pack: the `# service=` preamble for
 * protocol v0/v1, none for v2, `GIT_PROTOCOL` taken from the client's `Git-Protocol` header, and
 * `upload-pack --stateless-rpc` streaming its output.
 */
import { Readable } from 'node:stream';
import { spawnGit, type GitProcess } from './command.js';
import { FLUSH_PKT, pktLine } from './pkt-line.js';

export const UPLOAD_PACK_ADVERTISEMENT = 'application/x-git-upload-pack-advertisement';
export const UPLOAD_PACK_REQUEST = 'application/x-git-upload-pack-request';
export const UPLOAD_PACK_RESULT = 'application/x-git-upload-pack-result';

/** Packs for big repositories take a while to stream to slow clients. */
const UPLOAD_PACK_TIMEOUT_MS = 60 * 60_000;

/**
 * The `Git-Protocol` header reduced to what git accepts (`version=2`, `key=value` joined by `:`), or
 * undefined. Anything else is dropped rather than passed into git's environment.
 */
export function sanitizeGitProtocol(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  const parts = value.split(':').filter((p) => /^[A-Za-z0-9._-]+(=[A-Za-z0-9._-]+)?$/.test(p));
  return parts.length > 0 ? parts.join(':') : undefined;
}

/** True when the client asked for protocol v2. */
export function isProtocolV2(gitProtocol: string | undefined): boolean {
  return gitProtocol?.split(':').includes('version=2') ?? false;
}

/** The `# service=git-upload-pack` pkt-line and flush that precede a v0/v1 advertisement over HTTP. */
export function servicePreamble(service: string): Buffer {
  return Buffer.concat([pktLine(`# service=${service}\n`), FLUSH_PKT]);
}

export interface UploadPackOptions {
  /** The sanitized Git-Protocol value (see sanitizeGitProtocol). */
  gitProtocol?: string;
  signal?: AbortSignal;
}

/** Starts `git upload-pack --stateless-rpc --advertise-refs` on the mirror. */
export function advertiseRefs(gitDir: string, options: UploadPackOptions = {}): GitProcess {
  return spawnGit(['upload-pack', '--stateless-rpc', '--advertise-refs', gitDir], {
    env: protocolEnv(options.gitProtocol),
    signal: options.signal,
    timeoutMs: 5 * 60_000,
  });
}

/** Starts `git upload-pack --stateless-rpc` on the mirror, feeding it the client's request. */
export function uploadPack(gitDir: string, input: Readable, options: UploadPackOptions = {}): GitProcess {
  return spawnGit(['upload-pack', '--stateless-rpc', gitDir], {
    env: protocolEnv(options.gitProtocol),
    signal: options.signal,
    timeoutMs: UPLOAD_PACK_TIMEOUT_MS,
    input,
  });
}

function protocolEnv(gitProtocol: string | undefined): Record<string, string> {
  return gitProtocol ? { GIT_PROTOCOL: gitProtocol } : {};
}

/**
 * Waits until git has produced its first byte (or exited), so a command that fails at once can still
 * be answered with an error status instead of a 200 with a broken body. Returns a stream of the whole
 * output that errors if git exits non-zero, so a failure mid-stream aborts the response rather than
 * ending it as if complete. Rejects when git exits non-zero before writing anything.
 */
export async function outputOnceStarted(proc: GitProcess): Promise<Readable> {
  const iterator = proc.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first = await iterator.next();
  if (first.done) await proc.done;
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (!first.done) yield first.value;
      while (true) {
        const next = await iterator.next();
        if (next.done) break;
        yield next.value;
      }
      await proc.done;
    } finally {
      // Client went away (or git failed): stop git and everything it spawned.
      proc.kill();
    }
  }
  return Readable.from(all(), { objectMode: false });
}
