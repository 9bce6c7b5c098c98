/**
 * A pass-through proxy in front of moto_server that enforces what moto does not: a presigned URL
 * (`X-Amz-Date` + `X-Amz-Expires` in the query) is refused with S3's 403 "Request has expired" once
 * the gate's clock is past its expiry. Everything else is forwarded untouched. It records every
 * request (method, path, whether it was presigned, the conditional headers, the answer's status), so
 * tests can assert what a client sent to "S3".
 *
 * The clock is the test's: advancing it makes URLs already handed out expire, as time passing would.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GateRequest {
  method: string;
  /** Path without the query. */
  path: string;
  presigned: boolean;
  range?: string;
  ifMatch?: string;
  ifRange?: string;
  status?: number;
}

export interface S3ExpiryGate {
  /** Use as the S3 endpoint (presigned URLs then point here). */
  url: string;
  requests: GateRequest[];
  stop(): Promise<void>;
}

/** `20261203T085441Z` → ms since the epoch. */
function parseAmzDate(value: string): number {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!match) return Number.NaN;
  const [, y, mo, d, h, mi, s] = match.map(Number);
  return Date.UTC(y, mo - 1, d, h, mi, s);
}

export async function startS3ExpiryGate(target: string, now: () => number): Promise<S3ExpiryGate> {
  const targetUrl = new URL(target);
  const requests: GateRequest[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://gate.invalid');
    const date = url.searchParams.get('X-Amz-Date');
    const expires = url.searchParams.get('X-Amz-Expires');
    const entry: GateRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      presigned: date !== null,
      range: req.headers.range,
      ifMatch: req.headers['if-match'],
      ifRange: req.headers['if-range'] as string | undefined,
    };
    requests.push(entry);
    if (date !== null && !(now() <= parseAmzDate(date) + Number(expires) * 1000)) {
      entry.status = 403;
      req.resume();
      const body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>';
      res.writeHead(403, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const upstream = http.request(
      { host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        entry.status = answer.statusCode;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
