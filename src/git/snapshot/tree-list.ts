/**
 * Lists every path of a commit's tree (recursively) with mode, object id and blob size, from one
 * `git ls-tree -r -l -z --full-tree` run parsed as a stream.
 */
import { spawnGit } from '../command.js';
import { ByteReader } from './byte-reader.js';
import { SHA1_OID_PATTERN } from '../../protocol/object-id.js';

/** `<mode> SP <type> SP <oid> SP+ <size>`, the part of an `ls-tree -l` record before the tab. */
const LS_TREE_HEAD = new RegExp(`^([0-7]{6}) (blob|commit) (${SHA1_OID_PATTERN}) +(\\d+|-)$`);

/** A blob (file or symlink) or gitlink (submodule commit) in a commit's tree. */
export interface TreeEntry {
  /** Raw path bytes relative to the work tree root. */
  path: Buffer;
  /** Canonical git mode: 0o100644, 0o100755, 0o120000 or 0o160000. */
  mode: number;
  /** 40-hex object id. */
  oid: string;
  /** Blob size in bytes; 0 for gitlinks. */
  size: number;
}

/** Environment that keeps replace refs from altering what a commit means. */
export const PURE_OBJECT_ENV: Record<string, string> = { GIT_NO_REPLACE_OBJECTS: '1' };

/**
 * The tree of `commit` in `gitDir`, in git's tree order (which, for a full recursive listing, equals
 * the index's path order).
 */
export async function listTree(gitDir: string, commit: string, signal?: AbortSignal): Promise<TreeEntry[]> {
  const proc = spawnGit(['ls-tree', '-r', '-l', '-z', '--full-tree', commit], {
    cwd: gitDir,
    env: PURE_OBJECT_ENV,
    signal,
  });
  const reader = new ByteReader(proc.stdout);
  const entries: TreeEntry[] = [];
  try {
    while (true) {
      const record = await reader.readUntil(0);
      if (record === undefined) break;
      entries.push(parseRecord(record));
    }
  } catch (err) {
    proc.kill();
    await proc.done.catch(() => undefined);
    throw err;
  }
  await proc.done;
  return entries;
}

/** Parses `<mode> SP <type> SP <oid> SP+ <size> TAB <path>`. */
function parseRecord(record: Buffer): TreeEntry {
  const tab = record.indexOf(0x09);
  if (tab < 0) throw new Error('malformed ls-tree record');
  const head = record.subarray(0, tab).toString('latin1');
  const match = LS_TREE_HEAD.exec(head);
  if (match === null) throw new Error(`unexpected ls-tree record: ${head.slice(0, 120)}`);
  const [, modeText, type, oid, sizeText] = match;
  const rawMode = parseInt(modeText, 8);
  let mode: number;
  if (type === 'commit') mode = 0o160000;
  else if (rawMode === 0o120000) mode = 0o120000;
  else if ((rawMode & 0o170000) === 0o100000) mode = rawMode & 0o111 ? 0o100755 : 0o100644;
  else throw new Error(`unsupported tree entry mode ${modeText}`);
  return { path: Buffer.from(record.subarray(tab + 1)), mode, oid, size: sizeText === '-' ? 0 : Number(sizeText) };
}
