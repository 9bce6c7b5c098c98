/**
 * Coalesces concurrent calls with the same key into one execution: the first caller runs `work`,
 * everyone arriving before it settles shares its promise. Used for first clones, fetches and
 * snapshot generation, so twenty clients of a cold repository cause one upstream clone.
 */
export class SingleFlight<T> {
  private readonly inFlight = new Map<string, Promise<T>>();

  /** Runs `work` unless a call with `key` is already running, in which case its promise is returned. */
  run(key: string, work: () => Promise<T>): Promise<T> {
    const existing = this.inFlight.get(key);
    if (existing) return existing;
    const promise = (async () => {
      try {
        return await work();
      } finally {
        this.inFlight.delete(key);
      }
    })();
    this.inFlight.set(key, promise);
    return promise;
  }

  /** True while any call whose key starts with `prefix` is running. */
  anyRunning(prefix: string): boolean {
    for (const key of this.inFlight.keys()) if (key.startsWith(prefix)) return true;
    return false;
  }

  /** Waits for everything currently in flight (errors ignored); for shutdown. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
  }
}
