/**
 * A fault-injecting HTTP proxy for end-to-end tests: forwards every request to a target server and,
 * when the test's `decide` callback says so, breaks the exchange on the way: drops the connection
 * mid-body, stalls, strips the Range header (so the server answers 200 to a range), answers 404, or
 * flips one byte of the body.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type ProxyFault = 'drop' | 'stall' | 'ignore-range' | 'not-found' | 'corrupt';

export interface ProxiedRequest {
  method: string;
  path: string;
  range?: string;
  /** 1-based count of requests seen so far, this one included. */
  seq: number;
}

export interface FaultProxy {
  url: string;
  requests: ProxiedRequest[];
  /** Faults actually injected, for assertions that a case really exercised its fault. */
  injected: Array<{ fault: ProxyFault; path: string; range?: string }>;
  stop(): Promise<void>;
}

const DROP_AFTER_BYTES = 1000;

export async function startFaultProxy(target: string, decide: (req: ProxiedRequest) => ProxyFault | undefined): Promise<FaultProxy> {
  const targetUrl = new URL(target);
  const requests: ProxiedRequest[] = [];
  const injected: FaultProxy['injected'] = [];
  const stalled = new Set<http.ServerResponse>();

  const server = http.createServer((req, res) => {
    const info: ProxiedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', range: req.headers.range, seq: requests.length + 1 };
    requests.push(info);
    const fault = decide(info);
    if (fault) injected.push({ fault, path: info.path, range: info.range });
    if (fault === 'not-found') {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('gone\n');
      return;
    }
    const headers: http.OutgoingHttpHeaders = { ...req.headers, host: targetUrl.host };
    if (fault === 'ignore-range') {
      delete headers.range;
      delete headers['if-range'];
    }
    const upstream = http.request(
      { host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        if (fault === 'stall') {
          // Headers, then silence: the client's idle timeout must notice.
          stalled.add(res);
          up.destroy();
          return;
        }
        let sent = 0;
        let flipped = false;
        up.on('data', (chunk: Buffer) => {
          if (fault === 'drop' && sent + chunk.length > DROP_AFTER_BYTES) {
            res.write(chunk.subarray(0, Math.max(0, DROP_AFTER_BYTES - sent)));
            res.socket?.destroy();
            up.destroy();
            return;
          }
          if (fault === 'corrupt' && !flipped && chunk.length > 0) {
            const copy = Buffer.from(chunk);
            copy[Math.floor(copy.length / 2)] ^= 0xff;
            chunk = copy;
            flipped = true;
          }
          sent += chunk.length;
          res.write(chunk);
        });
        up.on('end', () => res.end());
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    injected,
    async stop() {
      for (const res of stalled) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
