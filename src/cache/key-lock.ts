/**
 * A per-key async mutex: critical sections for the same key run one after another, different keys run
 * in parallel. The disk and tiered caches use it to make check-then-publish steps atomic in-process.
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier section for `key` has finished; the lock is released however fn ends. */
  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      // Forget the key once nobody queued behind us, so the map does not grow with every key ever seen.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys with a section running or queued (for tests and diagnostics). */
  get size(): number {
    return this.tails.size;
  }
}
