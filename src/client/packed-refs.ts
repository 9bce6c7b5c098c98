/**
 * Merges the branches and tags the ref sync got (ref-sync.ts) into the restored clone's
 * `.git/packed-refs`, where `git clone` keeps its initial refs.
 *
 * Going through `git update-ref` or `git fetch` would write one loose ref per name, a transaction each
 * (seconds for a few thousand tags); a clone writes one file, and so do we. The restored clone is a
 * fresh temporary directory no other git process touches, and the file is written under git's own
 * lock name (`packed-refs.lock`, created exclusively), fsynced and renamed into place, with the header
 * traits clone writes (`peeled fully-peeled sorted`): annotated tags carry their peeled object, refs
 * are sorted by their bytes. Names that `git check-ref-format` would refuse are never written.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isObjectId } from '../protocol/object-id.js';

export interface PackedRef {
  name: string;
  oid: string;
  /** The object an annotated tag finally points to. */
  peeled?: string;
}

const HEADER = '# pack-refs with: peeled fully-peeled sorted \n';

/**
 * True for a ref name git accepts (git-check-ref-format rules), decoded without loss. A name with a
 * U+FFFD came from bytes that are not UTF-8 and cannot be written back as they were.
 */
export function isValidRefName(name: string): boolean {
  if (!name.startsWith('refs/') || name.length > 1024 || name.includes('\uFFFD')) return false;
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code <= 0x20 || code === 0x7f) return false;
  }
  if (/[~^:?*[\\]/.test(name) || name.includes('..') || name.includes('@{') || name.includes('//')) return false;
  if (name.endsWith('/') || name.endsWith('.')) return false;
  return name.split('/').every((part) => part !== '' && !part.startsWith('.') && !part.endsWith('.lock'));
}

/** Parses packed-refs text; `^` lines attach to the ref before them. Unknown lines are an error. */
export function parsePackedRefs(text: string): PackedRef[] {
  const refs: PackedRef[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('^')) {
      const last = refs[refs.length - 1];
      if (last === undefined || !isObjectId(line.slice(1))) throw new Error(`malformed packed-refs line: ${line.slice(0, 100)}`);
      last.peeled = line.slice(1);
      continue;
    }
    const space = line.indexOf(' ');
    const oid = line.slice(0, space);
    const name = line.slice(space + 1);
    if (space < 0 || !isObjectId(oid) || !isValidRefName(name)) throw new Error(`malformed packed-refs line: ${line.slice(0, 100)}`);
    refs.push({ name, oid });
  }
  return refs;
}

/** The file's bytes: header, then refs sorted by name (byte order), each followed by its peel line. */
export function formatPackedRefs(refs: Iterable<PackedRef>): string {
  const sorted = [...refs].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  const lines = sorted.map((ref) => `${ref.oid} ${ref.name}\n${ref.peeled && ref.peeled !== ref.oid ? `^${ref.peeled}\n` : ''}`);
  return HEADER + lines.join('');
}

/**
 * Adds `updates` to the clone's packed-refs (a ref of the same name is replaced) and writes it under
 * git's lock protocol. Call it only when no loose ref shadows these names (`git pack-refs --all` first).
 */
export async function writePackedRefs(gitDir: string, updates: readonly PackedRef[]): Promise<void> {
  const file = path.join(gitDir, 'packed-refs');
  const existing = await fs.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  const merged = new Map<string, PackedRef>();
  for (const ref of parsePackedRefs(existing)) merged.set(ref.name, ref);
  for (const ref of updates) {
    if (!isValidRefName(ref.name) || !isObjectId(ref.oid) || (ref.peeled !== undefined && !isObjectId(ref.peeled))) {
      throw new Error(`refusing to write ref ${JSON.stringify(ref.name.slice(0, 100))}`);
    }
    merged.set(ref.name, ref);
  }
  const lock = `${file}.lock`;
  const handle = await fs.open(lock, 'wx', 0o644);
  let renamed = false;
  try {
    await handle.writeFile(formatPackedRefs(merged.values()));
    await handle.sync();
    await handle.close();
    await fs.rename(lock, file);
    renamed = true;
  } finally {
    if (!renamed) {
      await handle.close().catch(() => undefined);
      await fs.rm(lock, { force: true });
    }
  }
}
