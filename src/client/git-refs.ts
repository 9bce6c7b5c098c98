/**
 * Reads a restored clone's HEAD and refs from its files instead of asking `git rev-parse` /
 * `git symbolic-ref`: each of those is a process, and spawning one from the restore's process costs
 * 10–70 ms on the test machine (fork grows with the process's memory), several times what git then
 * does. A restore asked seven such questions after extraction.
 *
 * Only the files a clone has: `HEAD`, loose refs (an object id or `ref: <name>`), `packed-refs`. A
 * ref found in neither, a malformed file or a symref chain deeper than git's own limit reads as
 * missing, and callers that need an answer fail with that (as the git commands failed before).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isObjectId } from '../protocol/object-id.js';
import { CachewError } from '../util/errors.js';
import { isValidRefName, parsePackedRefs } from './packed-refs.js';

/** git's SYMREF_MAXDEPTH. */
const MAX_SYMREF_DEPTH = 5;

/** What HEAD names: the branch it is attached to (`refs/heads/...`, if any) and the commit. */
export interface HeadState {
  branchRef?: string;
  commit: string;
}

/** Reads refs of one clone; packed-refs is read once, on first need. */
export class GitRefs {
  private readonly gitDir: string;
  private packed?: Promise<Map<string, string>>;

  constructor(cloneDir: string) {
    this.gitDir = path.join(cloneDir, '.git');
  }

  /** HEAD's branch and commit; throws when HEAD does not resolve to an object id. */
  async head(): Promise<HeadState> {
    const text = await this.readLoose('HEAD');
    const target = text !== undefined ? symrefTarget(text) : undefined;
    const commit = text === undefined ? undefined : await this.resolveText(text, 0);
    if (commit === undefined) throw new CachewError('internal', 'HEAD of the restored clone does not resolve to a commit');
    return target?.startsWith('refs/heads/') ? { branchRef: target, commit } : { commit };
  }

  /** The object id the full ref name `name` resolves to, following symrefs; undefined if none. */
  async resolve(name: string, depth = 0): Promise<string | undefined> {
    if (depth > MAX_SYMREF_DEPTH || !isValidRefName(name)) return undefined;
    const text = await this.readLoose(name);
    return text === undefined ? (await this.packedRefs()).get(name) : this.resolveText(text, depth);
  }

  /** What a loose ref file's `text` resolves to: its object id, or its symref target's. */
  private async resolveText(text: string, depth: number): Promise<string | undefined> {
    const target = symrefTarget(text);
    if (target !== undefined) return this.resolve(target, depth + 1);
    const oid = text.trim();
    return isObjectId(oid) ? oid : undefined;
  }

  private async readLoose(name: string): Promise<string | undefined> {
    try {
      return await fs.readFile(path.join(this.gitDir, name), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
      throw err;
    }
  }

  private packedRefs(): Promise<Map<string, string>> {
    this.packed ??= (async () => {
      const text = (await this.readLoose('packed-refs')) ?? '';
      return new Map(parsePackedRefs(text).map((ref) => [ref.name, ref.oid]));
    })();
    return this.packed;
  }
}

function symrefTarget(text: string): string | undefined {
  const match = /^ref: (\S+)\s*$/.exec(text);
  return match === null ? undefined : match[1];
}
