import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { HttpClient } from './http.js';
import { AdvertisementParser, singleCommitRefs } from './ref-advertisement.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

/** One pkt-line: 4 hex digits of length (including themselves), then the payload. */
function pkt(line: string): string {
  const payload = `${line}\n`;
  return (Buffer.byteLength(payload) + 4).toString(16).padStart(4, '0') + payload;
}

/** A protocol-v0 upload-pack advertisement of `refs` ([oid, name] pairs; the first carries capabilities). */
function advertisement(refs: Array<[string, string]>): string {
  const lines = refs.map(([oid, name], i) => pkt(i === 0 ? `${oid} ${name}\0multi_ack symref=HEAD:refs/heads/main` : `${oid} ${name}`));
  return `${pkt('# service=git-upload-pack')}0000${lines.join('')}0000`;
}

function parse(text: string, pieceBytes = text.length): ReturnType<AdvertisementParser['result']> {
  const parser = new AdvertisementParser();
  const bytes = Buffer.from(text);
  for (let at = 0; at < bytes.length; at += pieceBytes) {
    if (!parser.push(bytes.subarray(at, at + pieceBytes))) return undefined;
  }
  return parser.result();
}

void describe('AdvertisementParser', () => {
  it('maps branches to origin/* and keeps tags when every clone ref names one commit, in any split', () => {
    const text = advertisement([
      [A, 'HEAD'],
      [A, 'refs/heads/main'],
      [A, 'refs/heads/dev'],
      [B, 'refs/pull/1/head'], // not a clone's ref: ignored, whatever it names
      [A, 'refs/tags/v1'],
    ]);
    for (const pieceBytes of [text.length, 7, 1]) {
      assert.deepEqual(parse(text, pieceBytes), {
        commit: A,
        refs: [
          { name: 'refs/remotes/origin/main', oid: A },
          { name: 'refs/remotes/origin/dev', oid: A },
          { name: 'refs/tags/v1', oid: A },
        ],
      });
    }
  });

  it('gives up on a second commit, an annotated tag, an empty repository or a malformed line', () => {
    assert.equal(parse(advertisement([[A, 'HEAD'], [A, 'refs/heads/main'], [B, 'refs/heads/dev']])), undefined);
    assert.equal(parse(advertisement([[A, 'refs/heads/main'], [B, 'refs/tags/v1'], [A, 'refs/tags/v1^{}']])), undefined);
    assert.equal(parse(advertisement([['0'.repeat(40), 'capabilities^{}']])), undefined);
    assert.equal(parse(advertisement([['not-an-oid', 'refs/heads/main']])), undefined);
    assert.equal(parse(`${pkt('# service=git-receive-pack')}0000${pkt(`${A} refs/heads/main`)}0000`), undefined);
    assert.equal(parse(`${pkt('# service=git-upload-pack')}0000zz12`), undefined, 'not a length');
  });

  it('answers nothing for a cut-off advertisement or bytes after its end', () => {
    const whole = advertisement([[A, 'refs/heads/main']]);
    assert.equal(parse(whole.slice(0, -4)), undefined, 'no closing flush');
    assert.equal(parse(whole.slice(0, -10)), undefined, 'cut inside a line');
    assert.equal(parse(`${whole}${pkt('extra')}`), undefined);
  });

  it('stops reading past 1 MiB', () => {
    const parser = new AdvertisementParser();
    assert.equal(parser.push(Buffer.from(`${pkt('# service=git-upload-pack')}0000`)), true);
    const line = Buffer.from(pkt(`${A} refs/heads/main`));
    let accepted = true;
    for (let sent = 0; sent <= 1024 * 1024 && accepted; sent += line.length) accepted = parser.push(line);
    assert.equal(accepted, false);
  });
});

void describe('singleCommitRefs', () => {
  it('asks info/refs for upload-pack, and answers undefined on an HTTP error', async () => {
    const seen: string[] = [];
    let status = 200;
    const server = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(status, { 'content-type': 'application/x-git-upload-pack-advertisement' });
      res.end(status === 200 ? advertisement([[A, 'HEAD'], [A, 'refs/heads/main']]) : 'no');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = new HttpClient();
    try {
      const repo = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/git/example.com/org/repo`);
      assert.deepEqual(await singleCommitRefs(client, repo), { commit: A, refs: [{ name: 'refs/remotes/origin/main', oid: A }] });
      assert.deepEqual(seen, ['/git/example.com/org/repo/info/refs?service=git-upload-pack']);
      status = 404;
      assert.equal(await singleCommitRefs(client, repo), undefined);
    } finally {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
