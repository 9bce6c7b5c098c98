/**
 * Periodic work: with a snapshot interval > 0, every mirrored repository is fetched and snapshotted on
 * that interval (an unchanged head is not regenerated), and retention runs regularly. A tick never
 * starts while the previous one is still running, so slow upstreams cannot make jobs pile up.
 */
import type { Logger } from '../util/logger.js';
import { systemClock, type Clock, type Timer } from '../util/clock.js';
import type { SnapshotService } from './snapshot/service.js';

/** What the scheduler drives (the SnapshotService). */
export type ScheduledService = Pick<SnapshotService, 'refresh' | 'collectGarbage'>;

export interface SchedulerOptions {
  service: ScheduledService;
  /** 0 disables periodic snapshots (retention still runs). */
  snapshotIntervalMs: number;
  /** How often superseded snapshots are collected. */
  retentionIntervalMs: number;
  /**
   * Every repository mirrored on this replica (MirrorManager.list(): including ones only ever cloned
   * through the git routes, or by an earlier run), re-read on each tick so new mirrors get snapshots too.
   */
  listRepos: () => Promise<Array<{ host: string; repo: string }>>;
  logger: Logger;
  /** The clock whose timers drive the ticks (default: the system clock). */
  clock?: Clock;
}

export class Scheduler {
  private snapshotTimer?: Timer;
  private retentionTimer?: Timer;
  private snapshotTick?: Promise<void>;
  private retentionTick?: Promise<void>;
  private readonly abort = new AbortController();
  private readonly log: Logger;

  constructor(private readonly options: SchedulerOptions) {
    this.log = options.logger.child({ module: 'scheduler' });
  }

  /** Starts the timers; each tick's promise is returned to the clock, so a test clock can await it. */
  start(): void {
    const clock = this.options.clock ?? systemClock;
    if (this.options.snapshotIntervalMs > 0) {
      this.snapshotTimer = clock.setInterval(() => this.runSnapshots(), this.options.snapshotIntervalMs);
    }
    this.retentionTimer = clock.setInterval(() => this.runRetention(), this.options.retentionIntervalMs);
  }

  /** One pass over every mirrored repository (also callable from tests). */
  runSnapshots(): Promise<void> {
    this.snapshotTick ??= (async () => {
      try {
        for (const { host, repo } of await this.repositories()) {
          if (this.abort.signal.aborted) return;
          try {
            await this.options.service.refresh(host, repo, this.abort.signal);
          } catch (err) {
            this.log.warn({ err: (err as Error).message, host, repo }, 'scheduled snapshot failed');
          }
        }
      } finally {
        this.snapshotTick = undefined;
      }
    })();
    return this.snapshotTick;
  }

  /** One retention pass over every mirrored repository (also callable from tests). */
  runRetention(): Promise<void> {
    this.retentionTick ??= (async () => {
      try {
        await this.options.service.collectGarbage(await this.repositories());
      } finally {
        this.retentionTick = undefined;
      }
    })();
    return this.retentionTick;
  }

  /** The mirror inventory; a tick that cannot read it does nothing (the next one reads it again). */
  private async repositories(): Promise<Array<{ host: string; repo: string }>> {
    try {
      return await this.options.listRepos();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'listing mirrors failed');
      return [];
    }
  }

  async stop(): Promise<void> {
    this.snapshotTimer?.cancel();
    this.retentionTimer?.cancel();
    this.abort.abort(new Error('scheduler stopped'));
    await Promise.allSettled([this.snapshotTick, this.retentionTick]);
  }
}
