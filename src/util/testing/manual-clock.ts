/**
 * ManualClock: a {@link Clock} that moves only when a test says so. advance() runs every timer that
 * falls due, in order, and waits for the promise a callback returns, so a test that advances past a
 * scheduler tick or a sweep knows the tick has finished when advance() resolves: no sleeping, and no
 * "wait a bit and hope nothing happened".
 */
import type { Clock, Timer } from '../clock.js';

interface Pending {
  due: number;
  /** Set for setInterval timers. */
  every?: number;
  callback: () => unknown;
  order: number;
}

export class ManualClock implements Clock {
  #now: number;
  #order = 0;
  readonly #pending = new Set<Pending>();

  /** Starts at `start` ms since the epoch (default: the real time now, so dates look plausible). */
  constructor(start = Date.now()) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => unknown, ms: number): Timer {
    return this.#add({ due: this.#now + Math.max(0, ms), callback, order: this.#order++ });
  }

  setInterval(callback: () => unknown, ms: number): Timer {
    const every = Math.max(1, ms);
    return this.#add({ due: this.#now + every, every, callback, order: this.#order++ });
  }

  /** Timers not yet fired or cancelled (intervals count until cancelled). */
  get pendingTimers(): number {
    return this.#pending.size;
  }

  /**
   * Moves time forward by `ms`, firing each timer that falls due at its own instant, earliest first,
   * and awaiting what its callback returns (a rejection rejects advance()).
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (let next = this.#next(target); next; next = this.#next(target)) {
      this.#now = Math.max(this.#now, next.due);
      if (next.every !== undefined) next.due += next.every;
      else this.#pending.delete(next);
      await next.callback();
    }
    this.#now = Math.max(this.#now, target);
  }

  #add(pending: Pending): Timer {
    this.#pending.add(pending);
    return { cancel: () => void this.#pending.delete(pending) };
  }

  #next(target: number): Pending | undefined {
    let best: Pending | undefined;
    for (const pending of this.#pending) {
      if (pending.due > target) continue;
      if (!best || pending.due < best.due || (pending.due === best.due && pending.order < best.order)) best = pending;
    }
    return best;
  }
}
