/**
 * Snapshot and bundle records (SPEC §6): small JSON objects that map a repository and commit (or a
 * base..head pair) to the content-addressed blob holding the bytes. Records are written once
 * (create-if-absent), so the first complete snapshot for a commit wins on every replica.
 *
 * Key layout, relative to the cache (the backend adds its own prefix):
 *   records/<host>/<repo>/<commit>.json
 *   bundles/<host>/<repo>/<base>..<head>.json
 * `<repo>` is the canonical repository (no `.git`). `<host>` may carry a port (`127.0.0.1:9000`), but
 * cache keys only allow `[A-Za-z0-9._-]`, so `:` is stored as `_` — injective, because a valid host
 * name never contains `_` (see hostProblem).
 */
import type { Cache, CreateOptions, ObjectMeta } from '../cache/cache.js';
import { writeStream } from '../cache/write.js';
import { canonicalRepo, hostProblem, isCommit, repoPathProblem } from '../protocol/routes.js';
import { isSha256Hex } from '../protocol/etag.js';
import { BadRequestError, CachewError } from '../util/errors.js';

/** One snapshot: the archive of `commit` is the blob `digest` of `size` bytes. */
export interface SnapshotRecord {
  commit: string;
  /** sha256 hex of the archive (the blob key and the ETag). */
  digest: string;
  size: number;
  /** ISO-8601 time the record was written. */
  created: string;
  /** Snapshot format version of the archive generator, when it states one. */
  format?: string;
  /** Format v3 and later: the archive's data frames (offset, compressed length, tar bytes, sha256). */
  frames?: RecordFrame[];
}

/** One zstd frame of a snapshot archive, as the record lists it (same as its frame table). */
export interface RecordFrame {
  offset: number;
  length: number;
  size: number;
  sha256: string;
}

/** One delta bundle from `base` to `head`; the bundle bytes are the blob `digest`. */
export interface BundleRecord {
  base: string;
  head: string;
  digest: string;
  size: number;
  /** ISO-8601 time the record was written. */
  created: string;
  /** ISO-8601 time after which the record is expired (also enforced by the cache's TTL). */
  expires?: string;
}

/** Stored with every snapshot and bundle blob (S3 shows it; the routes send their own type). */
export const BLOB_METADATA = { 'content-type': 'application/octet-stream' };

/** Records are tiny; anything larger is not ours and is refused rather than buffered. */
const MAX_JSON_BYTES = 1 << 20;

/** The `<host>` segment as stored in keys: `:` → `_`. */
export function storageHost(host: string): string {
  const problem = hostProblem(host);
  if (problem) throw new BadRequestError(`${problem}: ${host}`);
  return host.replace(':', '_');
}

/** `<host>/<repo>` for keys, validated and canonical (no `.git`). */
export function repoKeyPart(host: string, repo: string): string {
  const problem = repoPathProblem(repo);
  if (problem) throw new BadRequestError(problem);
  const canonical = canonicalRepo(repo);
  if (canonical.length === 0 || canonical.endsWith('/')) throw new BadRequestError('empty repository path');
  return `${storageHost(host)}/${canonical}`;
}

function checkCommit(commit: string): string {
  if (!isCommit(commit)) throw new BadRequestError(`not a commit id: ${commit}`);
  return commit;
}

/** Prefix of every snapshot record of one repository (ends with `/`). */
export function recordPrefix(host: string, repo: string): string {
  return `records/${repoKeyPart(host, repo)}/`;
}

export function recordKey(host: string, repo: string, commit: string): string {
  return `${recordPrefix(host, repo)}${checkCommit(commit)}.json`;
}

/** Prefix of every bundle record of one repository (ends with `/`). */
export function bundlePrefix(host: string, repo: string): string {
  return `bundles/${repoKeyPart(host, repo)}/`;
}

export function bundleKey(host: string, repo: string, base: string, head: string): string {
  return `${bundlePrefix(host, repo)}${checkCommit(base)}..${checkCommit(head)}.json`;
}

/**
 * The commit named by a key listed under recordPrefix(), or undefined when the key belongs to a
 * nested repository (`org/repo/sub/...`) or is not a record at all.
 */
export function commitFromRecordKey(prefix: string, key: string): string | undefined {
  if (!key.startsWith(prefix) || !key.endsWith('.json')) return undefined;
  const commit = key.slice(prefix.length, -'.json'.length);
  return isCommit(commit) ? commit : undefined;
}

/** The base and head named by a key listed under bundlePrefix(), or undefined. */
export function rangeFromBundleKey(prefix: string, key: string): { base: string; head: string } | undefined {
  if (!key.startsWith(prefix) || !key.endsWith('.json')) return undefined;
  const [base, head, ...rest] = key.slice(prefix.length, -'.json'.length).split('..');
  if (rest.length > 0 || base === undefined || head === undefined) return undefined;
  return isCommit(base) && isCommit(head) ? { base, head } : undefined;
}

/**
 * A stored record that does not parse: corrupt or foreign data, never a user error. The message (a
 * 500 body) does not name the key; `key` is there for logs.
 */
export class CorruptRecordError extends CachewError {
  constructor(readonly key: string, reason: string) {
    super('internal', `corrupt stored record: ${reason}`);
  }
}

type Parser<T> = (value: unknown, key: string) => T;

/** Checks (and may convert) one field's value; throws CorruptRecordError naming the field. */
export type FieldRule<V> = (value: unknown, key: string, name: string) => V;

function asObject(value: unknown, key: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CorruptRecordError(key, 'not a JSON object');
  }
  return value as Record<string, unknown>;
}

/** A field that must be present and pass `check`. */
export function required<V>(check: (v: unknown) => v is V): FieldRule<V> {
  return (value, key, name) => {
    if (!check(value)) throw new CorruptRecordError(key, `bad field "${name}"`);
    return value;
  };
}

/** A field that may be absent; when present, `rule` applies. */
export function optional<V>(rule: FieldRule<V>): FieldRule<V | undefined> {
  return (value, key, name) => (value === undefined ? undefined : rule(value, key, name));
}

/** A field holding an array whose every element `parse` accepts. */
export function listOf<V>(parse: Parser<V>): FieldRule<V[]> {
  return (value, key, name) => {
    if (!Array.isArray(value)) throw new CorruptRecordError(key, `bad field "${name}"`);
    return value.map((element: unknown) => parse(element, key));
  };
}

/**
 * The parser of a stored JSON object described by one rule per field, checked in the table's order.
 * The result holds only the described fields (an absent optional one is left out), so foreign
 * extras in stored data never travel further.
 */
export function objectParser<T>(rules: { [K in keyof T]-?: FieldRule<T[K]> }): Parser<T> {
  return (value, key) => {
    const obj = asObject(value, key);
    const parsed: Record<string, unknown> = {};
    for (const [name, rule] of Object.entries<FieldRule<unknown>>(rules)) {
      const field = rule(obj[name], key, name);
      if (field !== undefined) parsed[name] = field;
    }
    return parsed as T;
  };
}

export const isString = (v: unknown): v is string => typeof v === 'string';
export const isCommitId = (v: unknown): v is string => typeof v === 'string' && isCommit(v);
export const isDigest = (v: unknown): v is string => typeof v === 'string' && isSha256Hex(v);
export const isSize = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
export const isTime = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v));

const parseFrame = objectParser<RecordFrame>({
  offset: required(isSize),
  length: required(isSize),
  size: required(isSize),
  sha256: required(isDigest),
});

/** The `frames` list of a snapshot record (also kept in the publish backlog). */
export function parseFrames(value: unknown, key: string): RecordFrame[] {
  return listOf(parseFrame)(value, key, 'frames');
}

export const parseSnapshotRecord = objectParser<SnapshotRecord>({
  commit: required(isCommitId),
  digest: required(isDigest),
  size: required(isSize),
  created: required(isTime),
  format: optional(required(isString)),
  frames: optional(listOf(parseFrame)),
});

export const parseBundleRecord = objectParser<BundleRecord>({
  base: required(isCommitId),
  head: required(isCommitId),
  digest: required(isDigest),
  size: required(isSize),
  created: required(isTime),
  expires: optional(required(isTime)),
});

/** A parsed JSON object and the etag to compare-and-swap it with. */
export interface Versioned<T> {
  value: T;
  etag: string;
}

/** Reads and parses a small JSON object; undefined when absent. Backend failures propagate. */
export async function readJson<T>(
  cache: Cache,
  key: string,
  parse: Parser<T>,
  signal?: AbortSignal,
): Promise<Versioned<T> | undefined> {
  const result = await cache.open(key, { signal });
  if (!result) return undefined;
  const body = result.body;
  if (!body) throw new CorruptRecordError(key, 'no body');
  if (result.meta.size > MAX_JSON_BYTES) {
    body.destroy();
    throw new CorruptRecordError(key, `larger than ${MAX_JSON_BYTES} bytes`);
  }
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new CorruptRecordError(key, 'not JSON');
  }
  return { value: parse(json, key), etag: result.meta.etag };
}

/** Serializes `value` as JSON and writes it under `key` with the given preconditions/TTL. */
export async function writeJson(cache: Cache, key: string, value: unknown, options: CreateOptions = {}): Promise<ObjectMeta> {
  const bytes = Buffer.from(`${JSON.stringify(value)}\n`, 'utf8');
  return writeStream(cache, key, [bytes], {
    ...options,
    metadata: { 'content-type': 'application/json', ...options.metadata },
  });
}

export async function readSnapshotRecord(
  cache: Cache,
  host: string,
  repo: string,
  commit: string,
  signal?: AbortSignal,
): Promise<SnapshotRecord | undefined> {
  return (await readJson(cache, recordKey(host, repo, commit), parseSnapshotRecord, signal))?.value;
}

/** Every snapshot record of one repository (any order); records of nested repositories are skipped. */
export async function listSnapshotRecords(
  cache: Cache,
  host: string,
  repo: string,
  signal?: AbortSignal,
): Promise<SnapshotRecord[]> {
  const prefix = recordPrefix(host, repo);
  const out: SnapshotRecord[] = [];
  for await (const meta of cache.list(prefix, signal)) {
    if (commitFromRecordKey(prefix, meta.key) === undefined) continue;
    // A record deleted between list and read (concurrent retention) is simply skipped.
    const record = await readJson(cache, meta.key, parseSnapshotRecord, signal);
    if (record) out.push(record.value);
  }
  return out;
}

/** Every unexpired bundle record of one repository (any order). */
export async function listBundleRecords(
  cache: Cache,
  host: string,
  repo: string,
  signal?: AbortSignal,
): Promise<Array<BundleRecord & { key: string }>> {
  const prefix = bundlePrefix(host, repo);
  const out: Array<BundleRecord & { key: string }> = [];
  for await (const meta of cache.list(prefix, signal)) {
    if (rangeFromBundleKey(prefix, meta.key) === undefined) continue;
    const record = await readJson(cache, meta.key, parseBundleRecord, signal);
    if (record) out.push({ ...record.value, key: meta.key });
  }
  return out;
}
