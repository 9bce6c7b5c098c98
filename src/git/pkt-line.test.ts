import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FLUSH_PKT, pktLine, readPktLines, readWants } from './pkt-line.js';
import { isProtocolV2, sanitizeGitProtocol, servicePreamble } from './smart-http.js';
import { BadRequestError } from '../util/errors.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(64);

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

void test('pktLine frames with a 4-hex length that counts itself', () => {
  assert.equal(pktLine('hi\n').toString(), '0007hi\n');
  assert.equal(servicePreamble('git-upload-pack').toString(), '001e# service=git-upload-pack\n0000');
  assert.throws(() => pktLine(Buffer.alloc(70_000)), RangeError);
});

void test('readPktLines parses across chunk boundaries, with flush/delim/response-end', async () => {
  const data = Buffer.concat([pktLine('one\n'), Buffer.from('0001'), pktLine('two'), FLUSH_PKT, Buffer.from('0002')]);
  for (const size of [1, 3, 1000]) {
    const seen: string[] = [];
    for await (const pkt of readPktLines(chunks(data, size))) seen.push(pkt.type === 'data' ? pkt.payload.toString() : pkt.type);
    assert.deepEqual(seen, ['one\n', 'delim', 'two', 'flush', 'response-end']);
  }
  await assert.rejects(readWants(chunks(Buffer.from('zzzz'), 4)), BadRequestError);
  await assert.rejects(readWants(chunks(Buffer.from('0010abc'), 4)), BadRequestError);
  await assert.rejects(readWants(chunks(Buffer.from('0003'), 4)), BadRequestError);
  // Well framed, but not an upload-pack request.
  await assert.rejects(readWants(chunks(Buffer.concat([pktLine('hello\n'), FLUSH_PKT]), 4)), BadRequestError);
  await assert.rejects(readWants(chunks(FLUSH_PKT, 4)), BadRequestError);
  await assert.rejects(readWants(chunks(Buffer.alloc(0), 4)), BadRequestError);
});

void test('readWants finds v0 (with capabilities) and v2 wants, deduplicated', async () => {
  const v0 = Buffer.concat([
    pktLine(`want ${A} multi_ack_detailed side-band-64k ofs-delta agent=git/2.39\n`),
    pktLine(`want ${B}\n`),
    pktLine(`want ${A}\n`),
    pktLine('deepen 1\n'),
    FLUSH_PKT,
    pktLine(`have ${'d'.repeat(40)}\n`),
    pktLine('done\n'),
  ]);
  assert.deepEqual(await readWants(chunks(v0, 7)), [A, B]);
  const v2 = Buffer.concat([pktLine('command=fetch\n'), Buffer.from('0001'), pktLine('thin-pack\n'), pktLine(`want ${C}\n`), pktLine('want-ref refs/heads/main\n'), pktLine('done\n'), FLUSH_PKT]);
  assert.deepEqual(await readWants(chunks(v2, 5)), [C]);
  assert.deepEqual(await readWants(chunks(pktLine(`want ${'x'.repeat(40)}\n`), 100)), [], 'non-hex ids are ignored');
});

void test('Git-Protocol header is reduced to safe key=value parts', () => {
  assert.equal(sanitizeGitProtocol('version=2'), 'version=2');
  assert.equal(sanitizeGitProtocol(['version=2:object-format=sha256']), 'version=2:object-format=sha256');
  assert.equal(sanitizeGitProtocol('version=2:$(rm -rf)'), 'version=2');
  assert.equal(sanitizeGitProtocol('\n'), undefined);
  assert.equal(sanitizeGitProtocol(undefined), undefined);
  assert.equal(isProtocolV2('version=2'), true);
  assert.equal(isProtocolV2('version=1'), false);
  assert.equal(isProtocolV2(undefined), false);
});
