/**
 * A scriptable misbehaving upstream for tests: an HTTP listener on 127.0.0.1 that passes requests
 * through to a real upstream (test/harness/upstream.ts) while its mode is 'git', and otherwise answers
 * the way a broken or hostile host might: a redirect to another loopback listener (the "elsewhere"
 * listener, which only counts connections: anything reaching it means a redirect was followed), an
 * HTML page with status 200, an empty 200, a 200 that claims to be a git advertisement but is not,
 * a bare status code, or a reply that is not HTTP at all.
 */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Upstream } from './upstream.js';

export type HostileMode =
  | 'git'
  | 'redirect'
  | 'html'
  | 'empty'
  | 'fake-advertisement'
  | 'garbage'
  | { status: number };

export interface HostileUpstream {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`: the `{host}` for cachew's upstream configuration. */
  hostName: string;
  /** Every request seen, in order (also in 'git' mode). */
  requests: Array<{ method: string; path: string; mode: string }>;
  /** Changes how following requests are answered. */
  setMode(mode: HostileMode): void;
  /** Connections the redirect target ("elsewhere") accepted; must stay 0 when redirects are refused. */
  elsewhereConnections(): number;
  /** URL of the redirect target, for tests that want to name it. */
  elsewhereUrl: string;
  stop(): Promise<void>;
}

const HTML = '<!doctype html><html><head><title>Sign in</title></head><body>maintenance</body></html>\n';

/** Starts the hostile upstream in front of `real` (mode 'git' at first). */
export async function startHostileUpstream(real: Upstream): Promise<HostileUpstream> {
  const realUrl = new URL(real.url);
  let mode: HostileMode = 'git';
  const requests: HostileUpstream['requests'] = [];

  let elsewhereCount = 0;
  const elsewhere = net.createServer((socket) => {
    elsewhereCount++;
    socket.on('error', () => {});
    socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\nconnection: close\r\n\r\nhi\n');
  });
  await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
  const elsewhereUrl = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`;

  const server = http.createServer((req, res) => {
    const name = typeof mode === 'string' ? mode : `status ${mode.status}`;
    requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', mode: name });
    if (mode === 'git') {
      passThrough(req, res, realUrl);
      return;
    }
    req.resume();
    if (mode === 'redirect') {
      res.writeHead(302, { location: `${elsewhereUrl}${req.url ?? '/'}`, 'content-length': 0 });
      res.end();
    } else if (mode === 'html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(HTML) });
      res.end(HTML);
    } else if (mode === 'empty') {
      res.writeHead(200, { 'content-length': 0 });
      res.end();
    } else if (mode === 'fake-advertisement') {
      // The right content type, but the body is not pkt-lines.
      const kind = (req.url ?? '').includes('git-upload-pack') && req.method === 'POST' ? 'result' : 'advertisement';
      res.writeHead(200, { 'content-type': `application/x-git-upload-pack-${kind}`, 'content-length': HTML.length });
      res.end(HTML);
    } else if (mode === 'garbage') {
      // Not HTTP: the client's parser must fail (a "bad reply", not "unreachable").
      res.socket?.end('SSH-2.0-OpenSSH_9.0\r\n');
    } else {
      res.writeHead(mode.status, { 'content-type': 'text/plain', 'content-length': 6 });
      res.end('nope.\n');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    hostName: `127.0.0.1:${port}`,
    requests,
    setMode(next) {
      mode = next;
      server.closeIdleConnections();
    },
    elsewhereConnections: () => elsewhereCount,
    elsewhereUrl,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => elsewhere.close(() => resolve()));
    },
  };
}

function passThrough(req: http.IncomingMessage, res: http.ServerResponse, target: URL): void {
  const upstream = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  upstream.on('error', () => {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  req.pipe(upstream);
}
