/**
 * Receive slabs that are used again once everything read into them has been consumed.
 *
 * Why: raw-http.ts reads every socket into 1 MiB slabs and hands views of them on (no copy). With a
 * fresh slab per MiB, a 191 MiB snapshot touched 191 MiB of new memory: ~49,000 page faults on the
 * thread that also hashes and decompresses. On the test VM a first touch costs 2–5 µs (1 MiB fresh
 * slabs: 88–251 ms per 200 MiB against 2 ms for a reused one), so the restore client spent more on
 * faults than on its HTTP parsing (docs/restore.md, "Receiving").
 *
 * The rule that keeps this safe: a slab is reused only when (1) its connection no longer reads into
 * it (`retire`) and (2) every byte handed out of it (`handOut`) came back (`release`). Releasing is
 * the consumer's promise that it will never read those bytes again; the decompressor (the only
 * caller) releases a piece after libzstd consumed all of it. A piece that is dropped, cut short or
 * never released simply keeps its slab out of the pool, and the garbage collector frees it as before:
 * losing track errs towards a fresh slab, never towards reuse. Pieces that are not views of a pool
 * slab (node:https, copies) are ignored.
 */

/** Slab size: reads get at least MIN_READ_ROOM of it (raw-http.ts). */
export const SLAB_BYTES = 1024 * 1024;
/** Free slabs kept at most: beyond the download's working set (8 requests × 8 MiB + the ring's lead). */
const MAX_FREE_SLABS = 96;

interface SlabState {
  slab: Buffer;
  /** Bytes handed out and not yet released. */
  outstanding: number;
  /** The connection reads into another slab now. */
  retired: boolean;
}

export class SlabPool {
  private readonly free: Buffer[] = [];
  /** Slabs in use, by their memory (a piece's `.buffer`). */
  private readonly inUse = new Map<ArrayBufferLike, SlabState>();

  /** A slab for a connection to read into: a recycled one when there is one. */
  take(): Buffer {
    const slab = this.free.pop() ?? Buffer.allocUnsafe(SLAB_BYTES);
    this.inUse.set(slab.buffer, { slab, outstanding: 0, retired: false });
    return slab;
  }

  /** `piece`, a view of a slab, goes to a consumer, which will `release` it once done. */
  handOut(piece: Buffer): void {
    const state = this.inUse.get(piece.buffer);
    if (state !== undefined) state.outstanding += piece.length;
  }

  /** The consumer will never read `piece` again. */
  release(piece: Buffer): void {
    const state = this.inUse.get(piece.buffer);
    if (state === undefined) return;
    state.outstanding -= piece.length;
    this.recycleIfDone(state);
  }

  /** The connection stopped reading into `slab` (it took another one, or closed). */
  retire(slab: Buffer): void {
    const state = this.inUse.get(slab.buffer);
    if (state === undefined) return;
    state.retired = true;
    this.recycleIfDone(state);
  }

  /** Slabs waiting for reuse (for tests). */
  get freeCount(): number {
    return this.free.length;
  }

  private recycleIfDone(state: SlabState): void {
    if (!state.retired || state.outstanding !== 0) return;
    this.inUse.delete(state.slab.buffer);
    if (this.free.length < MAX_FREE_SLABS) this.free.push(state.slab);
  }
}
