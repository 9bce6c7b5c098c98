/**
 * Answers of `git upload-pack` that are a pure function of a mirror's refs: the ref advertisement
 * (GET info/refs) and protocol v2's `ls-refs` reply. Every restore's ref sync and every clone or
 * fetch asks for them, and each answer used to cost a git process forked from cachewd: the ref
 * sync, with the ref check it triggered, cost cachewd 0.22 CPU s per restore, 0.04 s with these kept
 * (restores with and without it, 6 each; docs/decisions.md). upload-pack's answer to the
 * same request bytes is the same for as long as the refs are, so it is kept per
 * (mirror, refs version, Git-Protocol, request bytes) and replayed byte for byte.
 *
 * Correctness rests on the mirror's refs version (git/mirror.ts `refsVersion`): it changes before
 * any ref is written and again after, so an answer is stored under the version read before
 * upload-pack started, and a version that has moved on never finds it. Bounded: answers over
 * `maxEntryBytes` are not kept (a huge v0 advertisement streams as before), and the least recently
 * used go first beyond `maxTotalBytes`.
 */
import { createHash } from 'node:crypto';

export interface RefAnswerKey {
  /** Unique per mirror object (a re-created mirror starts afresh). */
  mirror: string;
  refsVersion: number;
  kind: 'advertise' | 'ls-refs';
  gitProtocol: string | undefined;
  /** The request body (empty for an advertisement). */
  request: Buffer;
}

export class RefAnswerCache {
  readonly #entries = new Map<string, Buffer>();
  #bytes = 0;

  constructor(
    readonly maxEntryBytes = 1024 * 1024,
    readonly maxTotalBytes = 16 * 1024 * 1024,
  ) {}

  get(key: RefAnswerKey): Buffer | undefined {
    const id = keyOf(key);
    const answer = this.#entries.get(id);
    if (answer === undefined) return undefined;
    // Most recently used last: Map keeps insertion order.
    this.#entries.delete(id);
    this.#entries.set(id, answer);
    return answer;
  }

  set(key: RefAnswerKey, answer: Buffer): void {
    if (answer.length > this.maxEntryBytes) return;
    const id = keyOf(key);
    const previous = this.#entries.get(id);
    if (previous !== undefined) {
      this.#bytes -= previous.length;
      this.#entries.delete(id);
    }
    this.#entries.set(id, answer);
    this.#bytes += answer.length;
    for (const [oldest, value] of this.#entries) {
      if (this.#bytes <= this.maxTotalBytes) break;
      this.#entries.delete(oldest);
      this.#bytes -= value.length;
    }
  }

  get size(): number {
    return this.#entries.size;
  }
}

function keyOf(key: RefAnswerKey): string {
  const request = createHash('sha256').update(key.request).digest('hex');
  return `${key.mirror}\n${key.refsVersion}\n${key.kind}\n${key.gitProtocol ?? ''}\n${request}`;
}

/**
 * True when `body` is a protocol v2 `ls-refs` command: its first pkt-line is `command=ls-refs`.
 * Anything else (a `fetch`, a v0 negotiation) is never cached.
 */
export function isLsRefsRequest(body: Buffer): boolean {
  if (body.length < 4) return false;
  const length = Number.parseInt(body.subarray(0, 4).toString('latin1'), 16);
  if (!Number.isInteger(length) || length < 4 || length > body.length) return false;
  const payload = body.subarray(4, length).toString('latin1');
  return payload === 'command=ls-refs\n' || payload === 'command=ls-refs';
}
