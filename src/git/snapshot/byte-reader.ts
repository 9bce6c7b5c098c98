/**
 * Pull-based reads over a byte stream: whole lines, NUL-terminated records and exact-length bodies,
 * with no more than one upstream chunk held at a time. Used to parse `git cat-file --batch` and
 * `git ls-tree -z` output without buffering it whole.
 */
export class ByteReader {
  private readonly iterator: AsyncIterator<Buffer>;
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;

  private first: Promise<IteratorResult<Buffer>> | undefined;

  constructor(source: AsyncIterable<Buffer>) {
    this.iterator = source[Symbol.asyncIterator]();
    // Start reading at once. A stream's iterator only starts listening on its first next(), and
    // Node resumes (discards) the unread stdout of a child process that exits before anyone
    // listens: a short `git cat-file` run can finish before its first answer is asked for.
    this.first = this.iterator.next();
    this.first.catch(() => undefined);
  }

  /** Pulls one more chunk; false at end of stream. */
  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    const pending = this.first;
    this.first = undefined;
    const next = await (pending ?? this.iterator.next());
    if (next.done === true) {
      this.ended = true;
      return false;
    }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    return true;
  }

  /**
   * Reads up to and excluding the next `delimiter` byte (which is consumed). Returns undefined at a
   * clean end of stream; throws if the stream ends inside a record or a record exceeds `maxLength`.
   */
  async readUntil(delimiter: number, maxLength = 1 << 20): Promise<Buffer | undefined> {
    let searchFrom = 0;
    while (true) {
      const at = this.buffer.indexOf(delimiter, searchFrom);
      if (at >= 0) {
        const record = this.buffer.subarray(0, at);
        this.buffer = this.buffer.subarray(at + 1);
        return record;
      }
      if (this.buffer.length > maxLength) throw new Error('record too long in git output');
      searchFrom = this.buffer.length;
      if (!(await this.fill())) {
        if (this.buffer.length === 0) return undefined;
        throw new Error('git output ended inside a record');
      }
    }
  }

  /** Yields exactly `length` bytes in chunks as they arrive; throws on a short stream. */
  async *readExact(length: number): AsyncGenerator<Buffer> {
    let remaining = length;
    while (remaining > 0) {
      if (this.buffer.length === 0 && !(await this.fill())) throw new Error('git output ended early');
      const take = Math.min(remaining, this.buffer.length);
      const chunk = this.buffer.subarray(0, take);
      this.buffer = this.buffer.subarray(take);
      remaining -= take;
      yield chunk;
    }
  }

  /** Reads exactly `length` bytes into one buffer (for small bodies only). */
  async readAll(length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const chunk of this.readExact(length)) parts.push(chunk);
    return Buffer.concat(parts, length);
  }
}
