/**
 * Streams the contents of many blobs, in a known order, from ONE `git cat-file --batch` process: the
 * object ids are piped to its stdin (with backpressure) and each answer `<oid> blob <size>\n<bytes>\n`
 * is handed out as a chunked body, so no blob is ever held whole in memory here.
 *
 * Nor in git (READ_MEMORY_CONFIG): git 2.39 streams a packed blob only when it is larger than
 * `core.bigFileThreshold`, and otherwise inflates it whole, so with the default (512 MiB) a 200 MiB
 * file cost cat-file 2× its size (measured: 100 MiB blob → 204 MiB RSS). With a 1 MiB threshold
 * every big blob streams, and small pack windows keep the mapped part of the mirror's packs small
 * (100 MiB blob → 70 MiB RSS). Neither setting changes the bytes cat-file prints.
 */
import { Readable } from 'node:stream';
import { spawnGit, type GitProcess } from '../command.js';
import { ByteReader } from './byte-reader.js';
import { PURE_OBJECT_ENV } from './tree-list.js';
import { OID_PATTERN } from '../../protocol/object-id.js';

/** `<oid> SP <type> SP <size>`: the header `git cat-file --batch` prints before each object. */
const HEADER = new RegExp(`^(${OID_PATTERN}) (\\w+) (\\d+)$`);

const OIDS_PER_WRITE = 512;

/** `git -c` options that bound git's memory while reading objects (see above); output unchanged. */
export const READ_MEMORY_CONFIG = ['-c', 'core.bigFileThreshold=1m', '-c', 'core.packedGitWindowSize=16m', '-c', 'core.packedGitLimit=64m'];

export interface BlobBody {
  size: number;
  /** The blob's bytes; MUST be consumed to the end before the next `next()` call. */
  body: AsyncGenerator<Buffer>;
}

export class BlobReader {
  private readonly proc: GitProcess;
  private readonly reader: ByteReader;

  /** Starts cat-file and queues `oids` (read in this exact order by `next`). */
  constructor(gitDir: string, oids: readonly string[], signal?: AbortSignal) {
    this.proc = spawnGit([...READ_MEMORY_CONFIG, 'cat-file', '--batch', '--buffer'], {
      cwd: gitDir,
      env: PURE_OBJECT_ENV,
      signal,
      input: Readable.from(requestLines(oids), { objectMode: false }),
    });
    this.reader = new ByteReader(this.proc.stdout);
  }

  /** Reads the next answer, which MUST be the blob `expectedOid`. */
  async next(expectedOid: string): Promise<BlobBody> {
    const header = await this.reader.readUntil(0x0a, 4096);
    if (header === undefined) {
      await this.proc.done; // surfaces git's own failure, if any
      throw new Error(`git cat-file ended before ${expectedOid}`);
    }
    const text = header.toString('latin1');
    const match = HEADER.exec(text);
    if (match === null) throw new Error(`git cat-file: ${text.slice(0, 120)}`);
    const [, oid, type, sizeText] = match;
    if (oid !== expectedOid || type !== 'blob') {
      throw new Error(`git cat-file answered ${oid} ${type}, expected blob ${expectedOid}`);
    }
    const size = Number(sizeText);
    return { size, body: this.body(size) };
  }

  private async *body(size: number): AsyncGenerator<Buffer> {
    yield* this.reader.readExact(size);
    const terminator = await this.reader.readAll(1);
    if (terminator[0] !== 0x0a) throw new Error('git cat-file: missing object terminator');
  }

  /** Waits for cat-file to exit after every queued object was read. */
  async close(): Promise<void> {
    const rest = await this.reader.readUntil(0x0a, 4096);
    if (rest !== undefined) throw new Error('git cat-file produced unexpected extra output');
    await this.proc.done;
  }

  /** Stops cat-file at once (on error paths); safe to call at any time. */
  async kill(): Promise<void> {
    this.proc.kill();
    await this.proc.done.catch(() => undefined);
  }
}

function* requestLines(oids: readonly string[]): Generator<Buffer> {
  for (let i = 0; i < oids.length; i += OIDS_PER_WRITE) {
    yield Buffer.from(oids.slice(i, i + OIDS_PER_WRITE).join('\n') + '\n', 'latin1');
  }
}
