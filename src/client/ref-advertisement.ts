/**
 * The ref sync's shortcut (ref-sync.ts): when every branch and tag the server has names the very
 * commit the archive holds, a clone of the server would add nothing but the refs themselves, so the
 * restore writes them without running git at all.
 *
 * Why: the sync's `git clone --reference` is six git processes (clone, remote-http, two for-each-ref,
 * rev-list, and the shell that parks it) and two more requests, ~0.1 s of CPU on the 2-core test VM
 * while the extraction still runs, even when there is nothing to fetch. Repositories with one branch
 * and no tags, or whose every branch and tag is at the head, are that case.
 *
 * What a clone gets is read from the server's protocol-v0 ref advertisement
 * (`GET <server>/git/{host}/{repo}/info/refs?service=git-upload-pack`, which cachewd answers from its
 * kept answers: git/ref-answers.ts): every `refs/heads/X` becomes `refs/remotes/origin/X`, every
 * `refs/tags/T` stays; other refs (`refs/pull/*`, notes) are not a clone's. The shortcut is taken only
 * when all of them name one commit and none is an annotated tag (a `^{}` line: the tag object is not in
 * the archive). The archive is a full clone of its commit, so that commit and its history are there:
 * exactly what git's connectivity check would have found. Anything else (another commit, a tag
 * object, a malformed or over-long advertisement, any HTTP failure) returns undefined, and the sync
 * runs git as before.
 */
import { isObjectId } from '../protocol/object-id.js';
import { discard, readBody, type HttpClient } from './http.js';
import type { PackedRef } from './packed-refs.js';

/** A clone's refs, all naming `commit`. */
export interface SingleCommitRefs {
  commit: string;
  refs: PackedRef[];
}

/** An advertisement larger than this is not read to the end: it cannot be a handful of refs. */
const MAX_ADVERTISEMENT_BYTES = 1024 * 1024;

/**
 * The refs `git clone <repoUrl>` would write, when they all name one commit; undefined otherwise or
 * on any failure (the caller then runs the full sync). `headers` go with the request (besides the
 * credentials the HttpClient adds for the server's origin).
 */
export async function singleCommitRefs(
  http: HttpClient,
  repoUrl: URL,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<SingleCommitRefs | undefined> {
  const url = new URL(`${repoUrl.pathname.replace(/\/$/, '')}/info/refs?service=git-upload-pack`, repoUrl);
  try {
    const response = await http.get(url, headers, signal);
    if (response.status !== 200) {
      discard(response);
      return undefined;
    }
    const parser = new AdvertisementParser();
    for await (const piece of readBody(response, http.idleTimeoutMs, signal)) {
      // Stops reading (and drops the connection) as soon as the answer is known to be "no".
      if (!parser.push(piece)) return undefined;
    }
    return parser.result();
  } catch {
    return undefined;
  }
}

/**
 * Reads a protocol-v0 upload-pack advertisement as pkt-lines (4 hex digits of length, "0000" a
 * flush): `# service=git-upload-pack`, a flush, then `<oid> <name>` lines (the first carries the
 * capabilities after a NUL), then a flush. Exported for tests.
 */
export class AdvertisementParser {
  private pending: Buffer = Buffer.alloc(0);
  private total = 0;
  private flushes = 0;
  private commit?: string;
  private readonly refs: PackedRef[] = [];
  private done = false;

  /** Takes the next bytes; false once the advertisement cannot give the shortcut (stop reading). */
  push(piece: Buffer): boolean {
    this.total += piece.length;
    if (this.total > MAX_ADVERTISEMENT_BYTES || this.done) return false;
    this.pending = this.pending.length === 0 ? piece : Buffer.concat([this.pending, piece]);
    let at = 0;
    while (this.pending.length - at >= 4) {
      const digits = this.pending.toString('latin1', at, at + 4).toLowerCase();
      const length = Number.parseInt(digits, 16);
      if (length.toString(16).padStart(4, '0') !== digits) return false; // not four hex digits
      if (length === 0) {
        at += 4;
        this.flushes++;
        if (this.flushes === 2) this.done = true;
        continue;
      }
      if (length < 4) return false;
      if (this.pending.length - at < length) break;
      const line = this.pending.toString('utf8', at + 4, at + length).replace(/\n$/, '');
      at += length;
      if (!this.line(line)) return false;
    }
    this.pending = this.pending.subarray(at);
    return true;
  }

  /** The shortcut's refs, once the whole advertisement was read and allowed it. */
  result(): SingleCommitRefs | undefined {
    if (!this.done || this.pending.length > 0 || this.commit === undefined) return undefined;
    return { commit: this.commit, refs: this.refs };
  }

  private line(line: string): boolean {
    if (this.flushes === 0) return line === '# service=git-upload-pack';
    if (this.flushes !== 1) return false; // nothing may follow the closing flush
    const withoutCaps = line.split('\0')[0];
    const space = withoutCaps.indexOf(' ');
    const oid = withoutCaps.slice(0, space);
    const name = withoutCaps.slice(space + 1);
    if (space < 0 || !isObjectId(oid)) return false;
    if (name === 'capabilities^{}') return false; // an empty repository: nothing to shortcut
    if (name.endsWith('^{}')) return false; // an annotated tag: its tag object is not in the archive
    let cloneName: string;
    if (name === 'HEAD') cloneName = '';
    else if (name.startsWith('refs/heads/')) cloneName = `refs/remotes/origin/${name.slice('refs/heads/'.length)}`;
    else if (name.startsWith('refs/tags/')) cloneName = name;
    else return true; // not a ref a clone takes
    if (this.commit === undefined) this.commit = oid;
    else if (this.commit !== oid) return false;
    if (cloneName !== '') this.refs.push({ name: cloneName, oid });
    return true;
  }
}
