import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { CorruptArchiveError } from './errors.js';
import { decompressInto, decompressWithCli, decompressorKind, type DecompressorKind, type OutputRoom } from './zstd-decompress.js';

/** Compresses with the zstd CLI (the server's own tool), one frame per call. */
function zstdFrame(data: Buffer): Buffer {
  return execFileSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 64 * 1024 * 1024 });
}

/** A skippable frame (magic 0x184D2A5?, little-endian length, payload), as the frame table is. */
function skippableFrame(payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(0x184d2a5e, 0);
  head.writeUInt32LE(payload.length, 4);
  return Buffer.concat([head, payload]);
}

/** Mostly compressible data with some noise, several MiB so output spans many chunks. */
function sample(size: number, seed: number): Buffer {
  const text = Buffer.from(`line ${seed} of a source file, with some words that repeat\n`.repeat(Math.ceil(size / 50)));
  const data = text.subarray(0, size);
  randomBytes(4096).copy(data, Math.floor(size / 2));
  return data;
}

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

/** An OutputRoom that keeps what it is given, in rooms of `roomBytes`; `stopAfter` rooms, then refuses. */
class CollectingRoom implements OutputRoom {
  readonly parts: Buffer[] = [];
  private current = Buffer.alloc(0);
  private rooms = 0;

  constructor(
    private readonly roomBytes: number,
    private readonly stopAfter = Infinity,
  ) {}

  async room(): Promise<Uint8Array> {
    if (++this.rooms > this.stopAfter) throw new Error('the consumer stopped (test)');
    this.current = Buffer.alloc(this.roomBytes);
    return this.current;
  }

  commit(count: number): void {
    this.parts.push(this.current.subarray(0, count));
  }
}

/** Everything `kind` decompresses from `source`. */
async function decode(kind: DecompressorKind, source: AsyncIterable<Buffer>): Promise<Buffer> {
  if (kind === 'cli') return collect(decompressWithCli(source));
  const sink = new CollectingRoom(100_003); // an odd room size: frames end mid-room
  await decompressInto(source, sink);
  return Buffer.concat(sink.parts);
}

const kinds: DecompressorKind[] = ['native', 'cli'];

void it('the native decompressor is the default on this machine', () => {
  // The addon is built at install; if this fails every restore silently pays for the CLI pipes.
  assert.equal(decompressorKind(), process.env.CACHEW_ZSTD === 'cli' ? 'cli' : 'native');
});

for (const kind of kinds) {
  void describe(`${kind} decompressor`, () => {
    const one = sample(3 * 1024 * 1024 + 17, 1);
    const two = sample(5 * 1024 * 1024 + 5, 2);
    const archive = Buffer.concat([zstdFrame(one), skippableFrame(Buffer.from('frame table')), zstdFrame(two)]);

    void it('restores concatenated frames and skips skippable ones, whatever the input chunking', async () => {
      assert.ok(archive.length < 256 * 1024, 'small enough to feed byte by byte');
      for (const size of [1, 777, 65_536, archive.length]) {
        if (size === 1 && kind === 'cli') continue; // a write per byte to a child: slow, says nothing new
        const out = await decode(kind, pieces(archive, size));
        assert.ok(out.equals(Buffer.concat([one, two])), `chunks of ${size}`);
      }
    });

    void it('refuses input that is not zstd, and a stream cut inside a frame', async () => {
      await assert.rejects(decode(kind, pieces(Buffer.from('<html>not a snapshot</html>'), 1024)), CorruptArchiveError);
      const cut = archive.subarray(0, archive.length - 100);
      await assert.rejects(decode(kind, pieces(cut, 65_536)), CorruptArchiveError);
    });

    void it("reports the source's own error, not the decompressor it stopped", async () => {
      async function* failing(): AsyncGenerator<Buffer> {
        yield archive.subarray(0, 100_000);
        throw new Error('digest mismatch (test)');
      }
      await assert.rejects(decode(kind, failing()), /digest mismatch \(test\)/);
    });

    void it('closes its source when the consumer stops early', async () => {
      let closed = false;
      async function* source(): AsyncGenerator<Buffer> {
        try {
          yield* pieces(archive, 65_536);
        } finally {
          closed = true;
        }
      }
      if (kind === 'cli') {
        for await (const chunk of decompressWithCli(source())) {
          assert.ok(chunk.length > 0);
          break;
        }
      } else {
        await assert.rejects(decompressInto(source(), new CollectingRoom(65_536, 2)), /the consumer stopped/);
      }
      assert.ok(closed, 'the source generator was closed');
    });
  });
}
