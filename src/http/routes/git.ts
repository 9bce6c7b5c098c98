/**
 * `/git/{host}/{repo}/...` requests that are not snapshots (SPEC §3): clone and fetch are served from
 * the local mirror; pushes and anything else (LFS, dumb HTTP) are forwarded to the upstream unchanged.
 * What to do is decided by git/smart-http-policy.ts; this file does the HTTP side (spooling the body,
 * writing the answer) and git/upstream-forward.ts talks to the upstream.
 */
import { createReadStream, createWriteStream, promises as fs } from 'node:fs';
import type { OutgoingHttpHeaders } from 'node:http';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { RepoHandler, RepoTarget, RequestContext } from '../context.js';
import { streamBody } from '../reply.js';
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
import { RefAnswerCache, isLsRefsRequest, type RefAnswerKey } from '../../git/ref-answers.js';
import { mirrorHasWants, planGitRequest, refusedUploadPack, uploadPackForwardHeaders } from '../../git/smart-http-policy.js';
import { endToEndHeaders, forwardToUpstream } from '../../git/upstream-forward.js';
import { BadRequestError, CachewError, InsufficientStorageError, NotFoundError, isNoSpace } from '../../util/errors.js';
import { byteLimit } from '../../util/byte-limit.js';
import type { Logger } from '../../util/logger.js';
import type { Metrics } from '../../util/metrics.js';

/** What the git routes use of a mirror (git/mirror.ts). */
export type ServedMirror = Pick<Mirror, 'gitDir' | 'instanceId' | 'refsVersion' | 'ensureReady' | 'ensureFresh' | 'missingObjects' | 'fetchNow'>;

export interface GitRouteDeps {
  /** The mirrors (MirrorManager): one per repository, and scratch space for request bodies. */
  mirrors: { get(host: string, canonicalRepo: string): ServedMirror; readonly tmpDir: string };
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
  /** Advertisements and ls-refs replies kept per refs version (git/ref-answers.ts); one is made if absent. */
  refAnswers?: RefAnswerCache;
}

/** Upload-pack requests are wants/haves, not data; anything bigger is not a git client. */
const DEFAULT_UPLOAD_PACK_BYTES = 64 * 1024 * 1024;
const DEFAULT_FORWARD_BYTES = 2 * 1024 * 1024 * 1024;
/** An ls-refs request is a few hundred bytes; a body bigger than this is never looked up in the cache. */
const LS_REFS_MAX_BYTES = 64 * 1024;
const NO_BODY = Buffer.alloc(0);

const NO_CACHE = {
  'cache-control': 'no-cache, max-age=0, must-revalidate',
  pragma: 'no-cache',
  expires: 'Fri, 01 Jan 1980 00:00:00 GMT',
};

export function createGitRoutes(deps: GitRouteDeps): { handle: RepoHandler } {
  const log = deps.logger.child({ module: 'git-http' });
  const answers = deps.refAnswers ?? new RefAnswerCache();

  const handle: RepoHandler = async (ctx, target) => {
    const plan = planGitRequest({
      action: target.action,
      method: ctx.req.method ?? 'GET',
      service: ctx.url.searchParams.get('service'),
      readOnly: deps.readOnly,
    });
    if (plan.kind === 'advertise') return advertise(ctx, target, deps, answers);
    if (plan.kind === 'upload-pack') return serveUploadPack(ctx, target, deps, answers, log);
    ctx.route = plan.push ? 'git.receive-pack' : 'git.forward';
    return forward(ctx, target, deps);
  };
  return { handle };
}

async function advertise(ctx: RequestContext, target: RepoTarget, deps: GitRouteDeps, answers: RefAnswerCache): Promise<void> {
  const mirror = deps.mirrors.get(target.host, target.canonicalRepo);
  await mirror.ensureReady({ signal: ctx.signal });
  await mirror.ensureFresh({ signal: ctx.signal });
  const gitProtocol = sanitizeGitProtocol(ctx.req.headers['git-protocol']);
  const key = answerKey(mirror, 'advertise', gitProtocol, NO_BODY);
  const cached = answers.get(key);
  const output = cached
    ? Readable.from([cached])
    : keptAnswer(answers, key, await outputOnceStarted(advertiseRefs(mirror.gitDir, { gitProtocol, signal: ctx.signal })));
  ctx.res.writeHead(200, { 'content-type': UPLOAD_PACK_ADVERTISEMENT, ...NO_CACHE });
  if (ctx.req.method === 'HEAD') {
    output.destroy();
    ctx.res.end();
    return;
  }
  if (!isProtocolV2(gitProtocol)) ctx.res.write(servicePreamble('git-upload-pack'));
  await streamBody(ctx, output);
}

async function serveUploadPack(ctx: RequestContext, target: RepoTarget, deps: GitRouteDeps, answers: RefAnswerCache, log: Logger): Promise<void> {
  const contentType = (ctx.req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (contentType !== UPLOAD_PACK_REQUEST) throw new BadRequestError(`expected Content-Type ${UPLOAD_PACK_REQUEST}`);
  const mirror = deps.mirrors.get(target.host, target.canonicalRepo);
  // The body is spooled so it can be replayed: to upload-pack after a fetch, or to upstream.
  const spool = await spoolRequest(ctx, deps);
  try {
    await mirror.ensureReady({ signal: ctx.signal });
    await mirror.ensureFresh({ signal: ctx.signal });
    const gitProtocol = sanitizeGitProtocol(ctx.req.headers['git-protocol']);
    const key = await lsRefsKey(mirror, gitProtocol, spool);
    const cached = key && answers.get(key);
    let output: Readable;
    if (cached) {
      output = Readable.from([cached]);
    } else {
      const wants = await readWants(createReadStream(spool));
      if (!(await mirrorHasWants(mirror, wants, { signal: ctx.signal, log }))) {
        deps.metrics?.upstreamRequests.inc({ kind: 'upload-pack-fallback' });
        return await forward(ctx, target, deps, {
          body: createReadStream(spool),
          headers: uploadPackForwardHeaders(ctx.req.headers),
        });
      }
      const proc = uploadPack(mirror.gitDir, createReadStream(spool), { gitProtocol, signal: ctx.signal });
      const started = await outputOnceStarted(proc).catch((err: unknown) => {
        throw refusedUploadPack(err) ?? err;
      });
      output = key ? keptAnswer(answers, key, started) : started;
    }
    ctx.res.writeHead(200, { 'content-type': UPLOAD_PACK_RESULT, ...NO_CACHE });
    const bytes = await streamBody(ctx, output);
    deps.metrics?.bytesServed.inc({ kind: 'pack' }, bytes);
  } finally {
    await fs.rm(spool, { force: true });
  }
}

/** The refs version is read before upload-pack starts: a ref update meanwhile moves it past this key. */
function answerKey(mirror: ServedMirror, kind: RefAnswerKey['kind'], gitProtocol: string | undefined, request: Buffer): RefAnswerKey {
  return { mirror: mirror.instanceId, refsVersion: mirror.refsVersion, kind, gitProtocol, request };
}

/** The cache key of a protocol v2 ls-refs request (the spooled body), or undefined for anything else. */
async function lsRefsKey(mirror: ServedMirror, gitProtocol: string | undefined, spool: string): Promise<RefAnswerKey | undefined> {
  if (!isProtocolV2(gitProtocol) || (await fs.stat(spool)).size > LS_REFS_MAX_BYTES) return undefined;
  const body = await fs.readFile(spool);
  return isLsRefsRequest(body) ? answerKey(mirror, 'ls-refs', gitProtocol, body) : undefined;
}

/**
 * Streams upload-pack's `output` on and keeps a copy under `key` once it ended well (git exited 0:
 * outputOnceStarted's stream errors otherwise) and was small enough. A client that goes away
 * mid-answer leaves nothing behind.
 */
function keptAnswer(answers: RefAnswerCache, key: RefAnswerKey, output: Readable): Readable {
  async function* copying(): AsyncGenerator<Buffer> {
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of output as AsyncIterable<Buffer>) {
      bytes += chunk.length;
      if (bytes <= answers.maxEntryBytes) chunks.push(chunk);
      yield chunk;
    }
    if (bytes <= answers.maxEntryBytes) answers.set(key, Buffer.concat(chunks, bytes));
  }
  return Readable.from(copying(), { objectMode: false });
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

/**
 * Forwards the request upstream (git/upstream-forward.ts) and streams the answer back unchanged:
 * status, end-to-end headers, body. `override` replays a spooled upload-pack body.
 */
async function forward(
  ctx: RequestContext,
  target: RepoTarget,
  deps: GitRouteDeps,
  override?: { body: Readable; headers: OutgoingHttpHeaders },
): Promise<void> {
  const upstream = deps.upstreams.get(target.host);
  if (!upstream) throw new NotFoundError(`upstream host ${target.host} is not configured`);
  const method = override ? 'POST' : (ctx.req.method ?? 'GET');
  deps.metrics?.upstreamRequests.inc({ kind: 'forward' });
  const upstreamRes = await forwardToUpstream({
    url: new URL(`${upstream.repoUrl(target.repo)}/${target.action}${ctx.url.search}`),
    host: target.host,
    method,
    headers: override?.headers ?? endToEndHeaders(ctx.req.headers),
    body: override?.body ?? (method === 'GET' || method === 'HEAD' ? undefined : ctx.req),
    maxBodyBytes: deps.limits?.maxForwardBytes ?? DEFAULT_FORWARD_BYTES,
    signal: ctx.signal,
  });
  ctx.res.writeHead(upstreamRes.statusCode ?? 502, endToEndHeaders(upstreamRes.headers));
  await streamBody(ctx, upstreamRes);
}
