/**
 * Asks an upstream which branches and tags it has, and refuses every answer that is not a real ref
 * advertisement. git itself is too forgiving for a mirror: a 200 that is not smart HTTP makes it fall
 * back to the dumb protocol, where an empty or HTML page reads as "no refs" and `fetch --prune` then
 * deletes every branch; and by default it follows a redirect on the first request to any host. So a
 * mirror first lists refs here (no redirects, status, content type and pkt-line framing all checked),
 * and only a valid listing may delete a ref.
 *
 * Protocol v2 `ls-refs` is asked first (one POST, only heads, tags and HEAD); a server that does not
 * speak v2 over HTTP gets the v0 `info/refs` advertisement request instead.
 */
import http from 'node:http';
import https from 'node:https';
import { FLUSH_PKT, pktLine, readPktLines, type PktLine } from './pkt-line.js';
import type { Upstream } from './upstreams.js';
import { isObjectId } from '../protocol/object-id.js';
import { BadRequestError, CachewError, NotFoundError, UpstreamError, abortReason, type UpstreamFailure } from '../util/errors.js';

/** Branches and tags of one upstream repository, and where its HEAD points. */
export interface AdvertisedRefs {
  /** `refs/heads/*` and `refs/tags/*` → object id. */
  refs: Map<string, string>;
  /** The branch HEAD points at (`refs/heads/main`), when upstream said. */
  head: string | undefined;
}

export interface ListRefsOptions {
  signal?: AbortSignal;
  /** Whole-exchange bound (default 2 minutes). */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 120_000;
/** A listing bigger than this is not a ref advertisement we want to hold (≈ 500k refs). */
const MAX_LISTING_BYTES = 64 * 1024 * 1024;
const ZERO_OID = /^0+$/;
const USER_AGENT = 'git/2.39-cachew';

/** Lists upstream's heads and tags. Throws NotFoundError or an UpstreamError with a truthful reason. */
export async function listUpstreamRefs(upstream: Upstream, repo: string, options: ListRefsOptions = {}): Promise<AdvertisedRefs> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const base = upstream.repoUrl(repo);
  try {
    const v2 = await request(upstream, `${base}/git-upload-pack`, 'POST', lsRefsRequest(), signal);
    if (v2.kind === 'answer') {
      const parsed = await parseLsRefs(v2.response).catch((err: unknown) => err as Error);
      if (!(parsed instanceof Error)) return parsed;
    }
    // Not a v2 answer (an older server, or one that drops Git-Protocol): ask for a v0 advertisement.
    const v0 = await request(upstream, `${base}/info/refs?service=git-upload-pack`, 'GET', undefined, signal);
    if (v0.kind !== 'answer') throw refusal(upstream, repo, v0);
    return await parseV0Advertisement(v0.response);
  } catch (err) {
    if (options.signal?.aborted) throw abortReason(options.signal);
    if (timeout.aborted) throw new UpstreamError(`upstream ${upstream.name} timed out listing refs of ${repo}`, undefined, { reason: 'timeout', cause: err });
    if (err instanceof CachewError) throw err;
    throw transportError(err, upstream.name, `listing refs of ${repo}`);
  }
}

type Outcome = { kind: 'answer'; response: http.IncomingMessage } | { kind: 'refused'; status: number; location?: string };

/**
 * One request that never follows a redirect. A 200 with the expected content type is an answer;
 * any other status is a refusal (its body discarded).
 */
function request(upstream: Upstream, url: string, method: 'GET' | 'POST', body: Buffer | undefined, signal: AbortSignal): Promise<Outcome> {
  const target = new URL(url);
  const headers: http.OutgoingHttpHeaders = { 'user-agent': USER_AGENT, 'git-protocol': 'version=2' };
  if (body) {
    headers['content-type'] = 'application/x-git-upload-pack-request';
    headers.accept = 'application/x-git-upload-pack-result';
    headers['content-length'] = body.length;
  }
  if (method === 'GET') delete headers['git-protocol'];
  const auth = upstream.authorizationHeader();
  if (auth) headers.authorization = auth;
  const expected = method === 'POST' ? 'application/x-git-upload-pack-result' : 'application/x-git-upload-pack-advertisement';
  const client = target.protocol === 'https:' ? https : http;
  return new Promise<Outcome>((resolve, reject) => {
    const req = client.request(target, { method, headers, signal }, (res) => {
      const status = res.statusCode ?? 0;
      const type = String(res.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      if (status === 200 && type === expected) return resolve({ kind: 'answer', response: res });
      res.resume();
      if (status === 200) return reject(badReply(`answered 200 with Content-Type "${type || 'none'}", not a git ref advertisement`));
      resolve({ kind: 'refused', status, location: res.headers.location });
    });
    req.on('error', reject);
    req.end(body);
  });
}

function lsRefsRequest(): Buffer {
  return Buffer.concat([
    pktLine('command=ls-refs\n'),
    pktLine(`agent=${USER_AGENT}\n`),
    Buffer.from('0001', 'latin1'),
    pktLine('symrefs\n'),
    pktLine('ref-prefix HEAD\n'),
    pktLine('ref-prefix refs/heads/\n'),
    pktLine('ref-prefix refs/tags/\n'),
    FLUSH_PKT,
  ]);
}

/** `<oid> <name>[ symref-target:<ref>][ peeled:<oid>]` lines, then a flush. */
async function parseLsRefs(body: http.IncomingMessage): Promise<AdvertisedRefs> {
  const result: AdvertisedRefs = { refs: new Map(), head: undefined };
  let flushed = false;
  for await (const pkt of packets(body)) {
    if (flushed) throw badReply('data after the end of the ref listing');
    if (pkt.type === 'flush') {
      flushed = true;
      continue;
    }
    if (pkt.type !== 'data') throw badReply('unexpected packet in the ref listing');
    const [oid, name, ...attributes] = pkt.payload.toString('utf8').replace(/\n$/, '').split(' ');
    if (!isObjectId(oid) || !name) throw badReply('malformed ref line');
    if (name === 'HEAD') {
      result.head = attributes.find((a) => a.startsWith('symref-target:'))?.slice('symref-target:'.length);
    } else {
      addRef(result, name, oid);
    }
  }
  if (!flushed) throw badReply('ref listing ended without a flush');
  return result;
}

/** `# service=git-upload-pack`, flush, `<oid> <name>\0<caps>`, `<oid> <name>`..., flush. */
async function parseV0Advertisement(body: http.IncomingMessage): Promise<AdvertisedRefs> {
  const result: AdvertisedRefs = { refs: new Map(), head: undefined };
  let stage: 'service' | 'service-flush' | 'refs' | 'done' = 'service';
  for await (const pkt of packets(body)) {
    if (stage === 'service') {
      if (pkt.type !== 'data' || !pkt.payload.toString('utf8').startsWith('# service=git-upload-pack')) throw badReply('advertisement without its service line');
      stage = 'service-flush';
    } else if (stage === 'service-flush') {
      if (pkt.type !== 'flush') throw badReply('advertisement without a flush after its service line');
      stage = 'refs';
    } else if (stage === 'refs') {
      if (pkt.type === 'flush') {
        stage = 'done';
        continue;
      }
      if (pkt.type !== 'data') throw badReply('unexpected packet in the advertisement');
      const text = pkt.payload.toString('utf8').replace(/\n$/, '');
      const [line, caps] = text.split('\0');
      const symref = /(?:^| )symref=HEAD:(\S+)/.exec(caps ?? '');
      if (symref) result.head = symref[1];
      const [oid, name] = line.split(' ');
      if (!isObjectId(oid) || !name) throw badReply('malformed ref line');
      // An empty repository advertises `0000… capabilities^{}`.
      if (!ZERO_OID.test(oid)) addRef(result, name, oid);
    } else {
      throw badReply('data after the end of the advertisement');
    }
  }
  if (stage !== 'done') throw badReply('advertisement ended early');
  return result;
}

function addRef(result: AdvertisedRefs, name: string, oid: string): void {
  if (name.endsWith('^{}')) return; // peeled tags (v0)
  if (!name.startsWith('refs/heads/') && !name.startsWith('refs/tags/')) return;
  result.refs.set(name, oid);
}

/** The reply's pkt-lines; framing errors are the upstream's fault here, not a bad request. */
async function* packets(body: http.IncomingMessage): AsyncGenerator<PktLine> {
  try {
    yield* readPktLines(bounded(body));
  } catch (err) {
    if (err instanceof BadRequestError) throw badReply(err.message);
    throw err;
  }
}

/** Stops reading a reply that grows past MAX_LISTING_BYTES. */
async function* bounded(body: http.IncomingMessage): AsyncGenerator<Buffer> {
  let total = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > MAX_LISTING_BYTES) throw badReply('ref listing too large');
      yield chunk;
    }
  } finally {
    body.destroy();
  }
}

function badReply(what: string): UpstreamError {
  return new UpstreamError(`bad reply from upstream: ${what}`, undefined, { reason: 'bad_reply' });
}

/** A non-200 answer: not found, refused credentials, a redirect we do not follow, or an error status. */
function refusal(upstream: Upstream, repo: string, outcome: { status: number; location?: string }): CachewError {
  const { status } = outcome;
  if (status === 404 || status === 410) return new NotFoundError(`repository ${upstream.name}/${repo} not found upstream`);
  if (status === 401 || status === 403) {
    // Hosts answer 401/403 for private and missing repositories alike: without credentials of our
    // own, that is "not found"; with them, upstream refused our credentials.
    if (!upstream.authorizationHeader()) return new NotFoundError(`repository ${upstream.name}/${repo} not found upstream (or private)`);
    return new UpstreamError(`upstream ${upstream.name} refused the configured credentials for ${repo} (HTTP ${status})`, status, { reason: 'auth' });
  }
  if (status >= 300 && status < 400) {
    let where = 'elsewhere';
    try {
      where = new URL(outcome.location ?? '', upstream.baseUrl).host || where;
    } catch {
      // unparseable Location: keep "elsewhere"
    }
    return new UpstreamError(`upstream ${upstream.name} redirected ${repo} to ${where}; redirects are not followed`, status, { reason: 'bad_reply' });
  }
  return new UpstreamError(`upstream ${upstream.name} failed for ${repo}: HTTP ${status}`, status, { reason: 'status' });
}

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
  'ECONNABORTED',
]);

/** What a socket-level failure talking to an upstream means: unreachable, or an answer that was not HTTP. */
export function upstreamFailureOf(err: unknown): UpstreamFailure {
  const code = String((err as NodeJS.ErrnoException | undefined)?.code ?? '');
  if (code.startsWith('HPE_') || code === 'ERR_INVALID_HTTP_RESPONSE' || code.startsWith('ERR_TLS') || code.includes('CERT')) return 'bad_reply';
  if (UNREACHABLE_CODES.has(code)) return 'unreachable';
  if ((err as Error | undefined)?.name === 'TimeoutError') return 'timeout';
  return 'unreachable';
}

/** Wraps a transport error from talking to `host` in an UpstreamError whose message says which kind. */
export function transportError(err: unknown, host: string, doing: string): UpstreamError {
  const reason = upstreamFailureOf(err);
  const what = reason === 'bad_reply' ? 'answered with something that is not valid HTTP' : reason === 'timeout' ? 'timed out' : 'is unreachable';
  return new UpstreamError(`upstream ${host} ${what} (${doing})`, undefined, { reason, cause: err });
}
