/**
 * Time as a dependency: the wall clock and timers that TTLs, sweeps, ref checks, retention and the
 * scheduler read, injected so that tests drive time (src/util/testing/manual-clock.ts) instead of
 * sleeping. Durations that are only logged or measured keep using the real clock.
 */

/** A pending timer; cancel() is idempotent. */
export interface Timer {
  cancel(): void;
}

/** Wall-clock time and timers. Timers never keep the process alive (they are unref'd). */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `callback` once after `ms`. */
  setTimeout(callback: () => unknown, ms: number): Timer;
  /** Calls `callback` every `ms`. */
  setInterval(callback: () => unknown, ms: number): Timer;
}

/** The real clock: Date.now() and Node's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(callback, ms) {
    const handle = setTimeout(callback, ms);
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
  setInterval(callback, ms) {
    const handle = setInterval(callback, ms);
    handle.unref();
    return { cancel: () => clearInterval(handle) };
  },
};
