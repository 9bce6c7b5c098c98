/**
 * A local upstream git host for tests: `git http-backend` (CGI) behind a small Node HTTP wrapper on a
 * free 127.0.0.1 port. It serves clone/fetch (protocol v0 and v2), push, and gzip request bodies, and
 * records every request so tests can assert what reached "upstream".
 *
 * With `{ users }` it behaves like a private forge: every request needs HTTP Basic credentials of a
 * listed user (401 with a challenge otherwise), and a user sees only its own repositories (404 for
 * the others, as GitHub answers). `users` stays editable, so a test can revoke a user mid-run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { cleanGitEnv, runGit } from '../../src/git/command.js';

/** A file to commit: plain content, or content with a mode ('120000' = symlink whose target is content). */
export type UpstreamFile = string | { content: string; mode?: '100755' | '120000' };

/** A user of the private-forge mode: its password and the repositories (names as in createRepo) it may read. */
export interface UpstreamUser {
  password: string;
  repos: string[];
}

export interface UpstreamOptions {
  /** Require HTTP Basic auth: user name → password and readable repositories. Default: open to all. */
  users?: Record<string, UpstreamUser>;
}

/** One request as the upstream saw it. */
export interface SeenRequest {
  method: string;
  /** The raw request target (path and query). */
  path: string;
  /** The authenticated user in private-forge mode, when the credentials were valid. */
  user?: string;
  /** Private-forge mode: the raw Authorization header (tests check which credentials reached the upstream). */
  authorization?: string;
  status?: number;
}

export interface Upstream {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`: the `{host}` for cachew's `--upstream NAME=BASEURL`. */
  hostName: string;
  /** Directory holding the bare repositories. */
  root: string;
  /** Every request seen, in order. `path` is the raw request target (path and query). */
  requests: SeenRequest[];
  /** Private-forge mode's users (edit to revoke or grant); undefined when the upstream is open. */
  users?: Record<string, UpstreamUser>;
  /** Creates `<root>/<name>.git` (bare, default branch main) with one commit; returns its URL. */
  createRepo(name: string, files?: Record<string, UpstreamFile>): Promise<string>;
  /** Adds a commit on main and pushes it to the bare repository; returns the commit sha. */
  commit(name: string, files: Record<string, UpstreamFile>, message?: string): Promise<string>;
  /** Rewrites main with an unrelated (root) commit; returns its sha. */
  forcePush(name: string, files: Record<string, string>): Promise<string>;
  /** The sha of main in the bare repository. */
  head(name: string): Promise<string>;
  /** When down, every request is answered 503. */
  setDown(down: boolean): void;
  stop(): Promise<void>;
}

/** Fixed, increasing commit dates make commit ids reproducible across runs. */
const EPOCH = 1_700_000_000;

/** Starts an upstream on a free loopback port. Call `stop()` to remove everything it created. */
export async function startUpstream(options: UpstreamOptions = {}): Promise<Upstream> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-upstream-'));
  const root = path.join(tmp, 'repos');
  const workRoot = path.join(tmp, 'work');
  await fs.mkdir(root, { recursive: true });
  await fs.mkdir(workRoot, { recursive: true });

  const requests: SeenRequest[] = [];
  const users = options.users;
  const children = new Set<ChildProcess>();
  let down = false;
  let tick = 0;

  const server = http.createServer((req, res) => {
    const seen: SeenRequest = { method: req.method ?? 'GET', path: req.url ?? '/' };
    // Only the private-forge mode records credentials, so open-mode request logs keep their shape.
    if (users && req.headers.authorization) seen.authorization = req.headers.authorization;
    requests.push(seen);
    if (down) {
      req.resume();
      res.writeHead(503, { 'content-type': 'text/plain', connection: 'close' });
      res.end('upstream is down\n');
      return;
    }
    if (users) {
      const verdict = authorize(users, req);
      seen.user = verdict.user;
      if (verdict.status !== 200) {
        seen.status = verdict.status;
        req.resume();
        const challenge: Record<string, string> = verdict.status === 401 ? { 'www-authenticate': 'Basic realm="test upstream"' } : {};
        res.writeHead(verdict.status, { 'content-type': 'text/plain', ...challenge });
        res.end(verdict.status === 401 ? 'authentication required\n' : 'not found\n');
        return;
      }
    }
    serveCgi(req, res, root, children);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;

  const gitEnv = (): Record<string, string> => {
    tick += 1;
    const date = `${EPOCH + tick * 60} +0000`;
    return { HOME: tmp, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date, GIT_AUTHOR_NAME: 'Test Author', GIT_AUTHOR_EMAIL: 'author@example.com' };
  };
  const git = (args: string[], cwd: string): Promise<string> => runGit(args, { cwd, env: gitEnv(), timeoutMs: 60_000 });
  const bareDir = (name: string): string => path.join(root, `${name}.git`);
  const workDir = (name: string): string => path.join(workRoot, name);

  const commitIn = async (dir: string, files: Record<string, UpstreamFile>, message: string): Promise<string> => {
    await writeFiles(dir, files);
    await git(['add', '-A'], dir);
    await git(['commit', '-q', '--allow-empty', '-m', message], dir);
    return (await git(['rev-parse', 'HEAD'], dir)).trim();
  };

  const freshWorkDir = async (name: string): Promise<string> => {
    const dir = workDir(name);
    await fs.rm(dir, { recursive: true, force: true });
    await fs.mkdir(dir, { recursive: true });
    await git(['init', '-q', '-b', 'main'], dir);
    await git(['remote', 'add', 'origin', bareDir(name)], dir);
    return dir;
  };

  return {
    url,
    hostName: `127.0.0.1:${port}`,
    root,
    requests,
    users,
    async createRepo(name, files = { 'README.md': `# ${name}\n` }) {
      const bare = bareDir(name);
      await fs.mkdir(bare, { recursive: true });
      await git(['init', '-q', '--bare', '-b', 'main'], bare);
      const dir = await freshWorkDir(name);
      await commitIn(dir, files, 'initial commit');
      await git(['push', '-q', 'origin', 'main'], dir);
      return `${url}/${name}.git`;
    },
    async commit(name, files, message = `commit ${tick + 1}`) {
      const dir = workDir(name);
      const sha = await commitIn(dir, files, message);
      await git(['push', '-q', 'origin', 'main'], dir);
      return sha;
    },
    async forcePush(name, files) {
      const dir = await freshWorkDir(name);
      const sha = await commitIn(dir, files, 'rewritten history');
      await git(['push', '-q', '--force', 'origin', 'main'], dir);
      return sha;
    },
    async head(name) {
      return (await git(['rev-parse', 'refs/heads/main'], bareDir(name))).trim();
    },
    setDown(value) {
      down = value;
      if (value) server.closeIdleConnections();
    },
    async stop() {
      for (const child of children) killGroup(child);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fs.rm(tmp, { recursive: true, force: true });
    },
  };
}

/**
 * Private-forge rules: no or wrong credentials → 401; a valid user asking for a repository that is not
 * in its list (existing or not) → 404; otherwise 200 (served).
 */
function authorize(users: Record<string, UpstreamUser>, req: http.IncomingMessage): { status: number; user?: string } {
  const match = /^Basic +([A-Za-z0-9+/=]+)$/i.exec(req.headers.authorization ?? '');
  if (!match) return { status: 401 };
  const login = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = login.indexOf(':');
  const name = login.slice(0, colon);
  const user = colon > 0 ? users[name] : undefined;
  if (!user || user.password !== login.slice(colon + 1)) return { status: 401 };
  const pathname = new URL(req.url ?? '/', 'http://upstream.invalid').pathname;
  const repo = /^\/(.+?)(?:\.git)?\/(?:info\/|objects\/|HEAD$|git-upload-pack$|git-receive-pack$)/.exec(pathname)?.[1];
  return repo !== undefined && user.repos.includes(repo) ? { status: 200, user: name } : { status: 404, user: name };
}

async function writeFiles(dir: string, files: Record<string, UpstreamFile>): Promise<void> {
  for (const [name, file] of Object.entries(files)) {
    const target = path.join(dir, name);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.rm(target, { force: true });
    const content = typeof file === 'string' ? file : file.content;
    const mode = typeof file === 'string' ? undefined : file.mode;
    if (mode === '120000') {
      await fs.symlink(content, target);
    } else {
      await fs.writeFile(target, content);
      if (mode === '100755') await fs.chmod(target, 0o755);
    }
  }
}

/** Kills a `serveCgi` child and its process group (a no-op once it exited). */
export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Runs `git http-backend` for one request, translating between HTTP and CGI: `root` holds the
 * repositories, the request path names one. Children are tracked in `children` until they exit.
 */
export function serveCgi(req: http.IncomingMessage, res: http.ServerResponse, root: string, children: Set<ChildProcess>): void {
  const target = new URL(req.url ?? '/', 'http://upstream.invalid');
  const env: Record<string, string> = cleanGitEnv({
    GIT_PROJECT_ROOT: root,
    GIT_HTTP_EXPORT_ALL: '1',
    PATH_INFO: decodeURIComponent(target.pathname),
    QUERY_STRING: target.search.replace(/^\?/, ''),
    REQUEST_METHOD: req.method ?? 'GET',
    REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    REMOTE_USER: 'tester',
    SERVER_PROTOCOL: 'HTTP/1.1',
    // Allow pushes and partial clones without touching each repository's config.
    GIT_CONFIG_COUNT: '2',
    GIT_CONFIG_KEY_0: 'http.receivepack',
    GIT_CONFIG_VALUE_0: 'true',
    GIT_CONFIG_KEY_1: 'uploadpack.allowFilter',
    GIT_CONFIG_VALUE_1: 'true',
  });
  const contentType = req.headers['content-type'];
  if (contentType) env.CONTENT_TYPE = contentType;
  const contentLength = req.headers['content-length'];
  if (contentLength) env.CONTENT_LENGTH = contentLength;
  // http-backend inflates gzip bodies itself when told through this variable.
  const encoding = req.headers['content-encoding'];
  if (encoding) env.HTTP_CONTENT_ENCODING = encoding;
  const protocol = req.headers['git-protocol'];
  if (typeof protocol === 'string') env.GIT_PROTOCOL = protocol;

  const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  children.add(child);
  child.on('close', () => children.delete(child));
  child.on('error', () => {
    if (!res.headersSent) res.writeHead(500).end();
  });
  child.stderr.resume();
  child.stdin.on('error', () => {});
  req.pipe(child.stdin);
  res.on('close', () => {
    if (!res.writableFinished) killGroup(child);
  });

  // CGI output: header lines, a blank line, then the body, which is streamed through untouched.
  let head = Buffer.alloc(0);
  let headerDone = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headerDone) {
      if (!res.write(chunk)) {
        child.stdout.pause();
        res.once('drain', () => child.stdout.resume());
      }
      return;
    }
    head = Buffer.concat([head, chunk]);
    const crlf = head.indexOf('\r\n\r\n');
    const lf = head.indexOf('\n\n');
    let end = -1;
    let sepLength = 0;
    if (crlf !== -1 && (lf === -1 || crlf < lf)) {
      end = crlf;
      sepLength = 4;
    } else if (lf !== -1) {
      end = lf;
      sepLength = 2;
    }
    if (end === -1) return;
    headerDone = true;
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of head.subarray(0, end).toString('latin1').split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
      else headers[name] = value;
    }
    res.writeHead(status, headers);
    const rest = head.subarray(end + sepLength);
    if (rest.length > 0) res.write(rest);
  });
  child.stdout.on('end', () => {
    if (!headerDone && !res.headersSent) res.writeHead(502);
    res.end();
  });
}
