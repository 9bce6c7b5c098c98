/**
 * A single-producer, single-consumer ring of byte slots in shared memory, for handing a byte stream
 * from the restore's main thread to the extraction thread (extract-thread.ts, extract-worker.ts)
 * without a message per chunk.
 *
 * Why not postMessage: a message per 512 KiB of a 300 MB archive costs an event-loop turn, a
 * (de)serialisation and a reply on each side (a first version's profile had 0.56 s of the extraction
 * thread's 2.8 s under postMessage); with the ring the only per-slot work is a memcpy, two atomic stores and a
 * futex wake. The consumer blocks in Atomics.wait (allowed on a worker thread, never on the main one);
 * the producer awaits Atomics.waitAsync.
 *
 * Layout: a control block of Int32 words (slots published, slots consumed, state, one length per slot)
 * and a data block of `slots` × `slotBytes`. Counters only grow; slot i lives at i % slots.
 */

/** Word indexes in the control block: counters, the producer's state, then one length per slot. */
const PUBLISHED = 0;
const CONSUMED = 1;
const STATE = 2;
const LENGTHS = 3;

/** The producer's state: running, ended after the last slot, or stopped (abandon the stream). */
const State = { running: 0, ended: 1, stopped: 2 } as const;

/** How long the consumer sleeps before looking again when nothing happened. */
const WAIT_MS = 1000;

/** Atomics.waitAsync: V8 (Node 16+) has it, TypeScript's ES2022 library does not declare it. */
const waitAsync = (Atomics as unknown as { waitAsync(array: Int32Array, index: number, value: number): { async: boolean; value: Promise<string> | string } }).waitAsync;

/** The shared memory of one ring: passed to the consumer thread through `workerData`. */
export interface RingMemory {
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
  slots: number;
  slotBytes: number;
}

export function createRing(slots: number, slotBytes: number): RingMemory {
  return {
    control: new SharedArrayBuffer((LENGTHS + slots) * Int32Array.BYTES_PER_ELEMENT),
    data: new SharedArrayBuffer(slots * slotBytes),
    slots,
    slotBytes,
  };
}

/** The main thread's end: copies bytes into slots, waiting (asynchronously) while the ring is full. */
export class RingWriter {
  private readonly control: Int32Array;
  private readonly data: Buffer;
  private published = 0;
  /** Bytes already in the slot being filled (slot `published`). */
  private filled = 0;

  /** `interrupted` rejects when the consumer failed: a full ring must not wait for it forever. */
  constructor(
    private readonly memory: RingMemory,
    private readonly interrupted: Promise<never>,
  ) {
    this.control = new Int32Array(memory.control);
    this.data = Buffer.from(memory.data);
  }

  /** Copies `chunk` into the ring; resolves once it is all in (not yet consumed). */
  async write(chunk: Uint8Array): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      const room = await this.room();
      const take = Math.min(chunk.length - at, room.length);
      room.set(chunk.subarray(at, at + take));
      this.commit(take);
      at += take;
    }
  }

  /**
   * The free part of the slot being filled (waiting for a free slot first): a producer that can write
   * in place (the decompressor) fills it and calls `commit` with the count, saving the copy `write` makes.
   */
  async room(): Promise<Uint8Array> {
    if (this.filled === 0) await this.waitForFreeSlot();
    const base = (this.published % this.memory.slots) * this.memory.slotBytes;
    return this.data.subarray(base + this.filled, base + this.memory.slotBytes);
  }

  /** Marks `count` bytes of the last `room` as written. */
  commit(count: number): void {
    this.filled += count;
    if (this.filled === this.memory.slotBytes) this.publish();
  }

  /** Publishes the partly filled slot, then tells the consumer nothing more will come. */
  end(): void {
    if (this.filled > 0) this.publish();
    this.setState(State.ended);
  }

  /** Tells the consumer to abandon the stream. */
  stop(): void {
    this.setState(State.stopped);
  }

  private publish(): void {
    Atomics.store(this.control, LENGTHS + (this.published % this.memory.slots), this.filled);
    this.published++;
    this.filled = 0;
    Atomics.store(this.control, PUBLISHED, this.published);
    Atomics.notify(this.control, PUBLISHED);
  }

  private setState(state: number): void {
    Atomics.store(this.control, STATE, state);
    Atomics.notify(this.control, PUBLISHED);
  }

  private async waitForFreeSlot(): Promise<void> {
    for (;;) {
      const consumed = Atomics.load(this.control, CONSUMED);
      if (this.published - consumed < this.memory.slots) return;
      const wait = waitAsync(this.control, CONSUMED, consumed);
      if (wait.async) await Promise.race([wait.value, this.interrupted]);
    }
  }
}

/** The consumer thread's end: hands over published slots in order, blocking while none is ready. */
export class RingReader {
  private readonly control: Int32Array;
  private consumed = 0;

  constructor(private readonly memory: RingMemory) {
    this.control = new Int32Array(memory.control);
  }

  /**
   * Calls `use` with each published slot's bytes in order, releasing the slot when it returns (so
   * `use` must not keep a view of them). Returns true at the producer's end, false if it stopped.
   */
  drain(use: (bytes: Buffer) => void): boolean {
    const { slots, slotBytes } = this.memory;
    for (;;) {
      const published = Atomics.load(this.control, PUBLISHED);
      const state = Atomics.load(this.control, STATE);
      if (state === State.stopped) return false;
      if (this.consumed === published) {
        // The producer publishes before it ends, so a second look at the count settles the race.
        if (state === State.ended && Atomics.load(this.control, PUBLISHED) === this.consumed) return true;
        // Bounded, so a producer that vanished without a word cannot park this thread for good.
        if (state === State.running) Atomics.wait(this.control, PUBLISHED, published, WAIT_MS);
        continue;
      }
      const slot = this.consumed % slots;
      const length = Atomics.load(this.control, LENGTHS + slot);
      use(Buffer.from(this.memory.data, slot * slotBytes, length));
      this.consumed++;
      Atomics.store(this.control, CONSUMED, this.consumed);
      Atomics.notify(this.control, CONSUMED);
    }
  }
}
