import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TimeoutError } from '../util/errors.js';
import { ChunkedDecoder } from './chunked.js';
import { RawHttpPool, parseHead, type ResponseBody } from './raw-http.js';

/**
 * A TCP server answering each request with whatever `respond` writes: the tests speak raw bytes, so
 * they can split heads mid-line, cut bodies short and close kept-alive connections.
 */
type Responder = (socket: net.Socket, request: string, index: number) => void;
let respond: Responder;
let server: net.Server;
let base: URL;
let connections = 0;
let requests = 0;

before(async () => {
  server = net.createServer((socket) => {
    connections++;
    let buffered = '';
    socket.on('data', (data: Buffer) => {
      buffered += data.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const request = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        respond(socket, request, requests++);
      }
    });
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = new URL(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`);
});
after(() => server.close());

async function collect(body: ResponseBody): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of body) pieces.push(Buffer.from(piece));
  return Buffer.concat(pieces);
}

function reset(responder: Responder): RawHttpPool {
  respond = responder;
  connections = 0;
  requests = 0;
  return new RawHttpPool(5_000);
}

void describe('RawHttpPool', () => {
  void it('reads a head split mid-line and a Content-Length body, and sends our headers', async () => {
    let seen = '';
    const pool = reset((socket, request) => {
      seen = request;
      socket.write('HTTP/1.1 206 Partial Content\r\nContent-Ra');
      setImmediate(() => socket.write('nge: bytes 0-9/20\r\nX-Twice: a\r\nx-twice: b\r\nContent-Length: 10\r\n\r\n01234'));
      setImmediate(() => setImmediate(() => socket.write('56789')));
    });
    const response = await pool.get(new URL('/snap?x=1', base), { Range: 'bytes=0-9' });
    assert.equal(response.status, 206);
    assert.equal(response.headers['content-range'], 'bytes 0-9/20');
    assert.equal(response.headers['x-twice'], 'a, b');
    assert.equal((await collect(response.body)).toString(), '0123456789');
    assert.ok(response.body.readableEnded);
    assert.match(seen, /^GET \/snap\?x=1 HTTP\/1\.1\r\n/);
    assert.match(seen, /\r\nRange: bytes=0-9(\r\n|$)/);
    pool.close();
  });

  void it('reuses a kept-alive connection, and replaces one the server closed while it was idle', async () => {
    const pool = reset((socket, _request, index) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n${index}`);
    });
    for (let i = 0; i < 3; i++) assert.equal((await collect((await pool.get(base, {})).body)).toString(), String(i));
    assert.equal(connections, 1, 'one connection for three requests');
    respond = (socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nz');
    assert.equal((await collect((await pool.get(base, {})).body)).toString(), 'z');
    // "Connection: close" was honoured: the next request needs (and gets) a new connection.
    respond = (socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk');
    assert.equal((await collect((await pool.get(base, {})).body)).toString(), 'k');
    // A request sent on a pooled connection that dies unanswered is sent again on a new one; here
    // the new one dies too, so the request fails, after two connections.
    const before = connections;
    respond = (socket) => socket.destroy();
    await assert.rejects(pool.get(base, {}));
    assert.equal(connections, before + 1, 'the dead pooled connection was replaced once');
    // A server that closes a kept-alive connection while it is idle costs the next request nothing.
    respond = (socket) => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ni');
    assert.equal((await collect((await pool.get(base, {})).body)).toString(), 'i');
    respond = (socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nj');
    assert.equal((await collect((await pool.get(base, {})).body)).toString(), 'j');
    pool.close();
  });

  void it('decodes a chunked body with extensions and trailers', async () => {
    const pool = reset((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n');
      setImmediate(() => socket.write('6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n'));
    });
    const response = await pool.get(base, {});
    assert.equal((await collect(response.body)).toString(), 'hello world');
    pool.close();
  });

  void it('reads a body without length until the server closes', async () => {
    const pool = reset((socket) => socket.end('HTTP/1.0 200 OK\r\n\r\nuntil the end'));
    assert.equal((await collect((await pool.get(base, {})).body)).toString(), 'until the end');
    pool.close();
  });

  void it('skips an interim 1xx response', async () => {
    const pool = reset((socket) => socket.write('HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno'));
    const response = await pool.get(base, {});
    assert.equal(response.status, 404);
    assert.equal((await collect(response.body)).toString(), 'no');
    pool.close();
  });

  void it('fails a body the connection cuts short, instead of waiting for it', async () => {
    const pool = reset((socket) => {
      socket.write('HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\n\r\npartial');
      setImmediate(() => socket.destroy());
    });
    const response = await pool.get(base, {});
    await assert.rejects(collect(response.body), /aborted|closed|reset/);
    pool.close();
  });

  void it('times out a response head that never comes, and stops on abort', async () => {
    const silent = reset(() => undefined);
    const slow = new RawHttpPool(50);
    await assert.rejects(slow.get(base, {}), TimeoutError);
    slow.close();
    const controller = new AbortController();
    const pending = silent.get(base, {}, controller.signal);
    controller.abort(new Error('stop now'));
    await assert.rejects(pending, /aborted/);
    silent.close();
  });

  void it('hands over a large body exactly while the consumer is slower than the socket', async () => {
    const size = 24 * 1024 * 1024;
    const pool = reset((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size}\r\n\r\n`);
      for (let i = 0; i < 24; i++) socket.write(Buffer.alloc(1024 * 1024, i));
    });
    const response = await pool.get(base, {});
    let at = 0;
    for await (const piece of response.body) {
      for (let i = 0; i < piece.length; i += 4099) assert.equal(piece[i], Math.floor((at + i) / (1024 * 1024)));
      at += piece.length;
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.equal(at, size);
    pool.close();
  });

  void it('refuses a header value with a line break', async () => {
    const pool = reset(() => undefined);
    await assert.rejects(pool.get(base, { 'x-evil': 'a\r\nHost: elsewhere' }), TypeError);
    pool.close();
  });
});

void describe('parseHead', () => {
  void it('refuses a malformed status or header line', () => {
    assert.throws(() => parseHead('HTTP/2 200'), /status line/);
    assert.throws(() => parseHead('HTTP/1.1 200 OK\r\nno colon here'), /header line/);
  });
});

void describe('ChunkedDecoder', () => {
  const coded = Buffer.from('4\r\nWiki\r\n7;a=b\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\nExpires: never\r\n\r\n');

  void it('gives the same payload however the coded body is split', () => {
    for (let cut = 1; cut < coded.length; cut++) {
      const decoder = new ChunkedDecoder();
      const out = [...decoder.push(coded.subarray(0, cut)), ...decoder.push(coded.subarray(cut))];
      assert.equal(Buffer.concat(out).toString(), 'Wikipedia in \r\nchunks.', `cut at ${cut}`);
      assert.ok(decoder.done);
    }
  });

  void it('refuses malformed size lines and missing CRLFs', () => {
    assert.throws(() => new ChunkedDecoder().push(Buffer.from('zz\r\n')), /chunk size/);
    assert.throws(() => new ChunkedDecoder().push(Buffer.from('2\r\nabX\r\n')), /CRLF/);
  });
});
