/**
 * `/git/{host}/{repo}/...` requests that are not snapshots (SPEC §3): clone and fetch are served from
 * the local mirror; pushes and anything else (LFS, dumb HTTP) are forwarded to the upstream unchanged.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Transform, type Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { RepoHandler, RepoTarget, RequestContext } from '../context.js';
import { streamBody } from '../reply.js';
import type { MirrorManager } from '../../git/mirrors.js';
import type { Mirror } from '../../git/mirror.js';
import type { UpstreamRegistry } from '../../git/upstreams.js';
import { readWants } from '../../git/pkt-line.js';
import {
  UPLOAD_PACK_ADVERTISEMENT,
  UPLOAD_PACK_REQUEST,
  UPLOAD_PACK_RESULT,
  advertiseRefs,
  isProtocolV2,
  outputOnceStarted,
  sanitizeGitProtocol,
  servicePreamble,
  uploadPack,
} from '../../git/smart-http.js';
import {
  BadRequestError,
  CachewError,
  GitCommandError,
  InsufficientStorageError,
  NotFoundError,
  PayloadTooLargeError,
  isNoSpace,
} from '../../util/errors.js';
import { transportError } from '../../git/upstream-refs.js';
import type { Logger } from '../../util/logger.js';
import type { Metrics } from '../../util/metrics.js';

export interface GitRouteDeps {
  mirrors: MirrorManager;
  upstreams: UpstreamRegistry;
  /** Refuse pushes (403). */
  readOnly: boolean;
  metrics?: Metrics;
  logger: Logger;
  /** Body limits (src/http/limits.ts); upload-pack bodies are counted after gunzip. */
  limits?: { maxUploadPackBytes: number; maxForwardBytes: number };
  /**
   * Opens the spool file for an upload-pack body. A seam for fault injection (tests make it fail
   * with ENOSPC); the default writes the file.
   */
  openSpool?: (file: string) => Writable;
}

/** Upload-pack requests are wants/haves, not data; anything bigger is not a git client. */
const DEFAULT_UPLOAD_PACK_BYTES = 64 * 1024 * 1024;
const DEFAULT_FORWARD_BYTES = 2 * 1024 * 1024 * 1024;

const NO_CACHE = {
  'cache-control': 'no-cache, max-age=0, must-revalidate',
  pragma: 'no-cache',
  expires: 'Fri, 01 Jan 1980 00:00:00 GMT',
};

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus Host. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

export function createGitRoutes(deps: GitRouteDeps): { handle: RepoHandler } {
  const log = deps.logger.child({ module: 'git-http' });

  const handle: RepoHandler = async (ctx, target) => {
    const method = ctx.req.method ?? 'GET';
    const service = ctx.url.searchParams.get('service');
    const isPush = target.action === 'git-receive-pack' || (target.action === 'info/refs' && service === 'git-receive-pack');
    if (isPush) {
      if (deps.readOnly) throw new CachewError('forbidden', 'this cachew is read-only: pushes are refused');
      ctx.route = 'git.receive-pack';
      return forward(ctx, target, deps);
    }
    if (target.action === 'info/refs' && service === 'git-upload-pack') {
      if (method !== 'GET' && method !== 'HEAD') throw new BadRequestError('info/refs expects GET');
      return advertise(ctx, target, deps);
    }
    if (target.action === 'git-upload-pack') {
      if (method !== 'POST') throw new BadRequestError('git-upload-pack expects POST');
      return serveUploadPack(ctx, target, deps, log);
    }
    ctx.route = 'git.forward';
    return forward(ctx, target, deps);
  };
  return { handle };
}

async function advertise(ctx: RequestContext, target: RepoTarget, deps: GitRouteDeps): Promise<void> {
  const mirror = deps.mirrors.get(target.host, target.canonicalRepo);
  await mirror.ensureReady({ signal: ctx.signal });
  await mirror.ensureFresh({ signal: ctx.signal });
  const gitProtocol = sanitizeGitProtocol(ctx.req.headers['git-protocol']);
  const proc = advertiseRefs(mirror.gitDir, { gitProtocol, signal: ctx.signal });
  const output = await outputOnceStarted(proc);
  ctx.res.writeHead(200, { 'content-type': UPLOAD_PACK_ADVERTISEMENT, ...NO_CACHE });
  if (ctx.req.method === 'HEAD') {
    output.destroy();
    ctx.res.end();
    return;
  }
  if (!isProtocolV2(gitProtocol)) ctx.res.write(servicePreamble('git-upload-pack'));
  await streamBody(ctx, output);
}

async function serveUploadPack(ctx: RequestContext, target: RepoTarget, deps: GitRouteDeps, log: Logger): Promise<void> {
  const contentType = (ctx.req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (contentType !== UPLOAD_PACK_REQUEST) throw new BadRequestError(`expected Content-Type ${UPLOAD_PACK_REQUEST}`);
  const mirror = deps.mirrors.get(target.host, target.canonicalRepo);
  // The body is spooled so it can be replayed: to upload-pack after a fetch, or to upstream.
  const spool = await spoolRequest(ctx, deps);
  try {
    await mirror.ensureReady({ signal: ctx.signal });
    await mirror.ensureFresh({ signal: ctx.signal });
    if (!(await hasAllWants(ctx, mirror, spool, log))) {
      deps.metrics?.upstreamRequests.inc({ kind: 'upload-pack-fallback' });
      return await forward(ctx, target, deps, {
        body: createReadStream(spool),
        headers: uploadPackForwardHeaders(ctx),
      });
    }
    const gitProtocol = sanitizeGitProtocol(ctx.req.headers['git-protocol']);
    const proc = uploadPack(mirror.gitDir, createReadStream(spool), { gitProtocol, signal: ctx.signal });
    const output = await outputOnceStarted(proc).catch((err: unknown) => {
      throw refusedRequest(err) ?? err;
    });
    ctx.res.writeHead(200, { 'content-type': UPLOAD_PACK_RESULT, ...NO_CACHE });
    const bytes = await streamBody(ctx, output);
    deps.metrics?.bytesServed.inc({ kind: 'pack' }, bytes);
  } finally {
    await fs.rm(spool, { force: true });
  }
}

/** upload-pack's complaints about the request itself (framing, syntax, capabilities, wants). */
const CLIENT_FAULT = /protocol error|expected|unknown (capability|command|argument)|invalid|unexpected|not our ref|bad (line|request)|disallowed/i;

/**
 * A 400 for upload-pack failing at once because of what the client sent; undefined for anything
 * else (a broken mirror is ours: 502). git's stderr is reduced to its last line.
 */
function refusedRequest(err: unknown): BadRequestError | undefined {
  if (!(err instanceof GitCommandError) || !CLIENT_FAULT.test(err.stderrTail)) return undefined;
  const line = err.stderrTail.trim().split('\n').pop() ?? '';
  const reason = line.replace(/^fatal: /, '').replace(/\/\S+/g, '…').slice(0, 200);
  return new BadRequestError(`malformed upload-pack request: ${reason}`, { cause: err });
}

/**
 * True when the mirror holds every object the request wants. A missing want triggers one fetch
 * (shared with concurrent requests); only if the object is still missing afterwards does the request
 * go upstream, so a client never sees "not our ref" for something upstream has.
 */
async function hasAllWants(ctx: RequestContext, mirror: Mirror, spool: string, log: Logger): Promise<boolean> {
  const wants = await readWants(createReadStream(spool));
  let missing = await mirror.missingObjects(wants, { signal: ctx.signal });
  if (missing.length === 0) return true;
  try {
    await mirror.fetchNow({ signal: ctx.signal });
  } catch (err) {
    log.warn({ err: (err as Error).message, missing: missing.length }, 'fetch for missing wants failed');
  }
  missing = await mirror.missingObjects(missing, { signal: ctx.signal });
  if (missing.length > 0) log.info({ missing: missing.slice(0, 5) }, 'wants not in mirror after fetch; forwarding upstream');
  return missing.length === 0;
}

/** Writes the (gunzipped) request body to a temp file, bounded in size; returns its path. */
async function spoolRequest(ctx: RequestContext, deps: GitRouteDeps): Promise<string> {
  const tmpDir = deps.mirrors.tmpDir;
  await fs.mkdir(tmpDir, { recursive: true });
  const file = path.join(tmpDir, `req-${randomBytes(8).toString('hex')}`);
  const encoding = (ctx.req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'x-gzip') {
    ctx.req.resume();
    throw new BadRequestError(`unsupported Content-Encoding ${encoding}`);
  }
  const limit = byteLimit(deps.limits?.maxUploadPackBytes ?? DEFAULT_UPLOAD_PACK_BYTES);
  const sink = (deps.openSpool ?? createWriteStream)(file);
  try {
    if (encoding === 'gzip' || encoding === 'x-gzip') await pipeline(ctx.req, createGunzip(), limit, sink, { signal: ctx.signal });
    else await pipeline(ctx.req, limit, sink, { signal: ctx.signal });
  } catch (err) {
    await fs.rm(file, { force: true });
    if (err instanceof CachewError || ctx.signal.aborted) throw err;
    // Our disk being full is not the client's fault (507, not "could not read the request body").
    if (isNoSpace(err)) throw new InsufficientStorageError(undefined, undefined, { cause: err });
    throw new BadRequestError('could not read the request body', { cause: err });
  }
  return file;
}

/** Passes bytes through until more than `max` went by, then fails with PayloadTooLargeError (413). */
function byteLimit(max: number): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, callback) {
      total += chunk.length;
      if (total > max) callback(new PayloadTooLargeError(max));
      else callback(null, chunk);
    },
  });
}

function uploadPackForwardHeaders(ctx: RequestContext): http.OutgoingHttpHeaders {
  const headers: http.OutgoingHttpHeaders = { 'content-type': UPLOAD_PACK_REQUEST, accept: UPLOAD_PACK_RESULT };
  const gitProtocol = sanitizeGitProtocol(ctx.req.headers['git-protocol']);
  if (gitProtocol) headers['git-protocol'] = gitProtocol;
  const userAgent = ctx.req.headers['user-agent'];
  if (userAgent) headers['user-agent'] = userAgent;
  // Only the caller's own credential: the server's token is for mirror fetches and nothing else.
  const auth = ctx.req.headers.authorization;
  if (auth) headers.authorization = auth;
  return headers;
}

/** Request headers minus hop-by-hop ones (and those the Connection header names). */
function endToEndHeaders(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const connectionListed = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  );
  const out: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || connectionListed.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/**
 * Forwards the request to the same path on the upstream host and streams the answer back unchanged
 * (status, end-to-end headers, body; no redirects followed, no content decoding). The client's own
 * Authorization goes along; the server's configured credentials are never added here.
 */
async function forward(
  ctx: RequestContext,
  target: RepoTarget,
  deps: GitRouteDeps,
  override?: { body: Readable; headers: http.OutgoingHttpHeaders },
): Promise<void> {
  const upstream = deps.upstreams.get(target.host);
  if (!upstream) throw new NotFoundError(`upstream host ${target.host} is not configured`);
  const url = new URL(`${upstream.repoUrl(target.repo)}/${target.action}${ctx.url.search}`);
  const method = override ? 'POST' : (ctx.req.method ?? 'GET');
  const headers = override?.headers ?? endToEndHeaders(ctx.req.headers);
  const body: Readable | undefined = override?.body ?? (method === 'GET' || method === 'HEAD' ? undefined : ctx.req);
  deps.metrics?.upstreamRequests.inc({ kind: 'forward' });

  const client = url.protocol === 'https:' ? https : http;
  const upstreamReq = client.request(url, { method, headers, signal: ctx.signal });
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    upstreamReq.once('response', resolve);
    upstreamReq.once('error', reject);
  });
  // Attach the rejection handler now: a failed request body must not surface as unhandled.
  response.catch(() => {});
  try {
    if (body) await pipeline(body, byteLimit(deps.limits?.maxForwardBytes ?? DEFAULT_FORWARD_BYTES), upstreamReq);
    else upstreamReq.end();
  } catch (err) {
    upstreamReq.destroy();
    if (ctx.signal.aborted || err instanceof CachewError) throw err;
    throw transportError(err, target.host, 'sending the request');
  }
  let upstreamRes: http.IncomingMessage;
  try {
    upstreamRes = await response;
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    // A reply that is not HTTP is a bad reply, not an unreachable host: say which.
    throw transportError(err, target.host, 'forwarding');
  }
  ctx.res.writeHead(upstreamRes.statusCode ?? 502, endToEndHeaders(upstreamRes.headers) as http.OutgoingHttpHeaders);
  await streamBody(ctx, upstreamRes);
}
