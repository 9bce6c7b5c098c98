/**
 * A fake cachew snapshot server for client tests: serves one real `.tar.zst` on the stable and the
 * immutable URL with the SPEC §4 headers and real Range / If-Range / If-Match semantics (206, 412, 416),
 * an optional delta bundle, and per-request fault injection (drop mid-body, stall, ignore the range,
 * 404, 500, flip a byte). Also builds fixtures: a real git clone archived with `tar --zstd`.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { formatEtag, sha256HexToReprDigest } from '../../src/protocol/etag.js';
import { evaluateConditions, parseConditions } from '../../src/protocol/conditions.js';
import { Headers, IMMUTABLE_CACHE_CONTROL, SNAPSHOT_CONTENT_TYPE, STABLE_CACHE_CONTROL } from '../../src/protocol/headers.js';
import { formatContentRange, type ResolvedRange } from '../../src/protocol/range.js';
import { bundlePath, immutableSnapshotPath, stableSnapshotPath } from '../../src/protocol/routes.js';
import { killGroup, serveCgi } from './upstream.js';

const exec = promisify(execFile);

export type Fault = 'drop' | 'stall' | 'ignore-range' | 'not-found' | 'error-500' | 'corrupt';

export interface RequestInfo {
  kind: 'stable' | 'immutable' | 'bundle' | 'other';
  /** 0-based count of requests of this kind before this one. */
  index: number;
  range?: string;
}

export interface SnapshotServerOptions {
  /** Path of the `.tar.zst` to serve. */
  archive: string;
  commit: string;
  host?: string;
  repo?: string;
  /** Path of a git bundle; when set the stable URL advertises it. */
  bundle?: string;
  /** Decides a fault per request; undefined = behave. */
  fault?: (request: RequestInfo) => Fault | undefined;
  /**
   * A directory holding `<repo>` (a git repository): `/git/{host}/{repo}/...` smart-HTTP requests are
   * served from it with `git http-backend`, as cachewd serves them from its mirror (the restore
   * client fetches branches and tags there). Without it they get 404.
   */
  gitRoot?: string;
}

export interface SnapshotServer {
  url: string;
  digest: string;
  size: number;
  requests: RequestInfo[];
  fault?: (request: RequestInfo) => Fault | undefined;
  close(): Promise<void>;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Starts the server on 127.0.0.1 with an ephemeral port. */
export async function startSnapshotServer(options: SnapshotServerOptions): Promise<SnapshotServer> {
  const host = options.host ?? '127.0.0.1:9';
  const repo = options.repo ?? 'org/repo';
  const digest = await sha256File(options.archive);
  const size = (await fs.stat(options.archive)).size;
  const modified = new Date(0).toUTCString();
  const counts = { stable: 0, immutable: 0, bundle: 0, other: 0 };
  const paths = {
    stable: stableSnapshotPath(host, repo),
    immutable: immutableSnapshotPath(host, repo, options.commit),
    bundle: bundlePath(host, repo, options.commit),
  };
  const state: SnapshotServer = {
    url: '',
    digest,
    size,
    requests: [],
    fault: options.fault,
    close: async () => {
      for (const child of children) killGroup(child);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const children = new Set<ChildProcess>();
  const gitPrefix = `/git/${host}/`;
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (options.gitRoot && url.startsWith(gitPrefix) && !url.startsWith(`${gitPrefix}${repo}/snapshot`)) {
      state.requests.push({ kind: 'other', index: counts.other++ });
      req.url = `/${url.slice(gitPrefix.length)}`;
      return serveCgi(req, res, options.gitRoot, children);
    }
    const kind: RequestInfo['kind'] =
      url === paths.stable ? 'stable' : url === paths.immutable ? 'immutable' : url === paths.bundle && options.bundle ? 'bundle' : 'other';
    const info: RequestInfo = { kind, index: counts[kind]++, range: req.headers.range };
    state.requests.push(info);
    const fault = state.fault?.(info);
    if (kind === 'other' || fault === 'not-found') return void res.writeHead(404).end('not found\n');
    if (fault === 'error-500') return void res.writeHead(500).end('boom\n');
    if (kind === 'bundle') {
      res.writeHead(200, { 'content-type': 'application/x-git-bundle' });
      createReadStream(options.bundle!).pipe(res);
      return;
    }
    const headers: Record<string, string> = {
      etag: formatEtag(digest),
      [Headers.reprDigest]: sha256HexToReprDigest(digest),
      [Headers.snapshotCommit]: options.commit,
      'content-type': SNAPSHOT_CONTENT_TYPE,
      'last-modified': modified,
      'cache-control': kind === 'stable' ? STABLE_CACHE_CONTROL : IMMUTABLE_CACHE_CONTROL,
    };
    if (kind === 'stable') {
      headers[Headers.contentLocation] = paths.immutable;
      if (options.bundle) headers[Headers.bundleUrl] = paths.bundle;
    }
    const conditions = parseConditions(req.headers, req.method);
    if (fault === 'ignore-range') delete conditions.range;
    const outcome = evaluateConditions({ etag: digest, lastModified: new Date(modified), size }, conditions);
    if (outcome.status === 412 || outcome.status === 304) return void res.writeHead(outcome.status, headers).end();
    if (outcome.status === 416) return void res.writeHead(416, { ...headers, 'content-range': formatContentRange(undefined, size) }).end();
    const range: ResolvedRange | undefined = outcome.status === 206 ? outcome.range : undefined;
    const start = range?.start ?? 0;
    const end = range?.end ?? size - 1;
    const length = end - start + 1;
    if (fault !== 'ignore-range') headers['accept-ranges'] = 'bytes';
    if (range) headers['content-range'] = formatContentRange(range, size);
    headers['content-length'] = String(length);
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD') return void res.end();
    void sendBody(res, options.archive, start, end, fault);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

async function sendBody(res: http.ServerResponse, file: string, start: number, end: number, fault: Fault | undefined): Promise<void> {
  const length = end - start + 1;
  if (fault === 'drop' || fault === 'stall') {
    const half = Math.max(1, Math.floor(length / 2));
    for await (const chunk of createReadStream(file, { start, end: start + half - 1 })) {
      if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve));
    }
    // Once the bytes are handed to the kernel (the write callback), cut (drop) or go silent (stall).
    await new Promise<void>((resolve) => res.write(Buffer.alloc(0), () => resolve()));
    if (fault === 'drop') res.socket?.destroy();
    return;
  }
  if (fault === 'corrupt') {
    const handle = await fs.open(file, 'r');
    const body = Buffer.alloc(length);
    await handle.read(body, 0, length, start);
    await handle.close();
    body[Math.floor(length / 2)] ^= 0xff;
    res.end(body);
    return;
  }
  createReadStream(file, { start, end }).pipe(res);
}

/** Runs git with a fixed identity and no user config; returns stdout. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec('git', args, {
    cwd,
    env: {
      PATH: process.env.PATH,
      HOME: cwd,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@example.com',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@example.com',
    },
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout.trim();
}

export interface GitFixture {
  upstream: string;
  /** The URL the snapshot's `origin` points at (the "upstream URL" the client is given). */
  upstreamUrl: string;
  archive: string;
  commit: string;
  /** A bundle from `commit` to `newCommit`, when requested. */
  bundle?: string;
  newCommit?: string;
  /** A `gitRoot` for startSnapshotServer whose `org/repo` has main at `commit` (and a tag `v1`). */
  gitRoot: string;
  /** The same after upstream moved to `newCommit` (with a bundle). */
  newGitRoot?: string;
}

/**
 * Makes an upstream repo (exec file, symlink, nested dirs, a `*.lock`, 96 KiB of random bytes), clones it, points `origin`
 * at `upstreamUrl`, archives the clone with `tar --zstd`; optionally adds a newer commit upstream
 * and a delta bundle to it.
 */
export async function makeGitFixture(root: string, options: { withBundle?: boolean; upstreamUrl?: string } = {}): Promise<GitFixture> {
  const upstreamUrl = options.upstreamUrl ?? 'http://127.0.0.1:9/org/repo';
  const upstream = path.join(root, 'upstream');
  await fs.mkdir(path.join(upstream, 'src/deep'), { recursive: true });
  await git(upstream, 'init', '-q', '-b', 'main');
  await fs.writeFile(path.join(upstream, 'README.md'), '# fixture\n');
  await fs.writeFile(path.join(upstream, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  await fs.writeFile(path.join(upstream, 'package-lock.lock'), 'locked\n');
  await fs.writeFile(path.join(upstream, 'src/deep/data.txt'), 'x'.repeat(50_000) + '\n');
  await fs.symlink('src/deep/data.txt', path.join(upstream, 'link'));
  // Incompressible bytes so the archive spans many small chunks in the tests.
  await fs.writeFile(path.join(upstream, 'src/random.bin'), randomBytes(96 * 1024));
  await git(upstream, 'add', '-A');
  await git(upstream, 'commit', '-q', '-m', 'first');
  const commit = await git(upstream, 'rev-parse', 'HEAD');
  const clone = path.join(root, 'clone');
  await git(root, 'clone', '-q', upstream, clone);
  await git(clone, 'remote', 'set-url', 'origin', upstreamUrl);
  const archive = path.join(root, 'snapshot.tar.zst');
  await exec('tar', ['-C', clone, '--zstd', '-cf', archive, '.']);
  await git(upstream, 'tag', '-a', '-m', 'first release', 'v1');
  const gitRoot = path.join(root, 'served');
  await git(root, 'clone', '-q', '--bare', upstream, path.join(gitRoot, 'org/repo'));
  const fixture: GitFixture = { upstream, upstreamUrl, archive, commit, gitRoot };
  if (options.withBundle) {
    await fs.writeFile(path.join(upstream, 'NEW.md'), 'newer\n');
    await git(upstream, 'add', '-A');
    await git(upstream, 'commit', '-q', '-m', 'second');
    fixture.newCommit = await git(upstream, 'rev-parse', 'HEAD');
    fixture.bundle = path.join(root, 'delta.bundle');
    await git(upstream, 'bundle', 'create', '-q', fixture.bundle, 'main', `^${commit}`);
    fixture.newGitRoot = path.join(root, 'served-new');
    await git(root, 'clone', '-q', '--bare', upstream, path.join(fixture.newGitRoot, 'org/repo'));
  }
  return fixture;
}

/** Compresses a tar stream produced by `write` into `file` with the zstd CLI. */
export async function zstdFile(input: string, output: string): Promise<void> {
  await exec('zstd', ['-q', '-f', '-o', output, input]);
}
