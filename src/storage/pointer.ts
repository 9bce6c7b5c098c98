/**
 * The per-repository pointer (SPEC §6): `pointers/<host>/<repo>.json` names the current snapshot. It
 * is the only mutable object of the snapshot store and is only ever changed by compare-and-swap
 * (If-Match on the stored etag, or create-if-absent when there is none), so concurrent replicas never
 * overwrite each other blindly, and it only ever moves forward in history.
 *
 * The pointer also remembers which snapshots stopped being current, and when (`superseded`): retention
 * keeps those for a grace period so in-flight downloads of the immutable URL can finish.
 */
import type { Cache } from '../cache/cache.js';
import { AlreadyExistsError, PreconditionFailedError, UnavailableError } from '../util/errors.js';
import {
  isCommitId,
  isDigest,
  isTime,
  listOf,
  objectParser,
  optional,
  readJson,
  required,
  repoKeyPart,
  writeJson,
  type SnapshotRecord,
  type Versioned,
} from './records.js';

/** A snapshot that stopped being current at `at` (ISO-8601). */
export interface SupersededEntry {
  commit: string;
  digest: string;
  at: string;
}

export interface SnapshotPointer {
  commit: string;
  digest: string;
  /** ISO-8601 time of the last change. */
  updated: string;
  /** Earlier current snapshots still within (or awaiting) retention, newest last. */
  superseded: SupersededEntry[];
}

/**
 * Decides whether the pointer may move from `older` (its current commit) to `newer`. Generation passes
 * the mirror's ancestry check (git/mirror.ts `isAncestor`: newer descends from older; a commit the
 * mirror does not know counts as no); a known force-push publishes with `force` instead.
 */
export type AncestryCheck = (older: string, newer: string) => Promise<boolean>;

/** Superseded entries kept at most; retention normally prunes long before this. */
const MAX_SUPERSEDED = 256;
const MAX_CAS_ATTEMPTS = 8;

export function pointerKey(host: string, repo: string): string {
  return `pointers/${repoKeyPart(host, repo)}.json`;
}

const parseSuperseded = objectParser<SupersededEntry>({
  commit: required(isCommitId),
  digest: required(isDigest),
  at: required(isTime),
});

/** The pointer as stored: an absent `superseded` reads as an empty list. */
const parseStoredPointer = objectParser<Omit<SnapshotPointer, 'superseded'> & { superseded?: SupersededEntry[] }>({
  commit: required(isCommitId),
  digest: required(isDigest),
  updated: required(isTime),
  superseded: optional(listOf(parseSuperseded)),
});

export function parsePointer(value: unknown, key: string): SnapshotPointer {
  const stored = parseStoredPointer(value, key);
  return { ...stored, superseded: stored.superseded ?? [] };
}

export async function readPointer(
  cache: Cache,
  host: string,
  repo: string,
  signal?: AbortSignal,
): Promise<Versioned<SnapshotPointer> | undefined> {
  return readJson(cache, pointerKey(host, repo), parsePointer, signal);
}

/**
 * Writes `next` only if the pointer is still the version we read (`previous` etag, or absent when
 * undefined). Resolves false when another writer got there first (the caller re-reads and decides again).
 */
export async function swapPointer(
  cache: Cache,
  host: string,
  repo: string,
  previousEtag: string | undefined,
  next: SnapshotPointer,
  signal?: AbortSignal,
): Promise<boolean> {
  try {
    await writeJson(
      cache,
      pointerKey(host, repo),
      next,
      previousEtag === undefined ? { ifNoneMatch: '*', signal } : { ifMatch: previousEtag, signal },
    );
    return true;
  } catch (err) {
    if (err instanceof PreconditionFailedError || err instanceof AlreadyExistsError) return false;
    throw err;
  }
}

export interface AdvanceOptions {
  /** Required to move an existing pointer unless `force`; see {@link AncestryCheck}. */
  isAncestor?: AncestryCheck;
  /** Move even when the current commit is not an ancestor (an operator or a known force-push). */
  force?: boolean;
  now: () => number;
  signal?: AbortSignal;
}

/** What {@link advancePointer} did. */
export type AdvanceOutcome = 'created' | 'advanced' | 'unchanged' | 'kept-newer';

/**
 * Moves the pointer to `record` by compare-and-swap, only ever forward:
 * - absent → created;
 * - already names `record.commit` → unchanged;
 * - names a commit for which `isAncestor(current, ours)` is false (e.g. a stale replica publishing an
 *   older commit) → kept-newer, the pointer is left alone — unless `force`;
 * - otherwise the pointer moves and the previous snapshot joins `superseded` with the current time.
 * Without `isAncestor` (and without `force`) an existing pointer is moved unconditionally, which is only
 * right for callers that know no other writer exists; servers MUST pass it.
 * A lost race re-reads and decides again (bounded); throws when it keeps losing.
 */
export async function advancePointer(
  cache: Cache,
  host: string,
  repo: string,
  record: SnapshotRecord,
  options: AdvanceOptions,
): Promise<AdvanceOutcome> {
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const current = await readPointer(cache, host, repo, options.signal);
    const at = new Date(options.now()).toISOString();
    if (!current) {
      const next: SnapshotPointer = { commit: record.commit, digest: record.digest, updated: at, superseded: [] };
      if (await swapPointer(cache, host, repo, undefined, next, options.signal)) return 'created';
      continue;
    }
    const pointer = current.value;
    if (pointer.commit === record.commit) {
      if (pointer.digest === record.digest) return 'unchanged';
      // The same commit under another digest means the record was replaced (retention deleted it and
      // it was regenerated); the pointer must follow the record, which is the source of truth.
    } else if (!options.force && options.isAncestor && !(await options.isAncestor(pointer.commit, record.commit))) {
      return 'kept-newer';
    }
    const superseded = pointer.superseded.filter((entry) => entry.commit !== record.commit);
    if (pointer.commit !== record.commit) superseded.push({ commit: pointer.commit, digest: pointer.digest, at });
    const next: SnapshotPointer = {
      commit: record.commit,
      digest: record.digest,
      updated: at,
      superseded: superseded.slice(-MAX_SUPERSEDED),
    };
    if (await swapPointer(cache, host, repo, current.etag, next, options.signal)) return 'advanced';
  }
  throw new UnavailableError(`pointer of ${host}/${repo} is contended; gave up after ${MAX_CAS_ATTEMPTS} attempts`, 1);
}
