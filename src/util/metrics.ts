/**
 * Prometheus metrics (prom-client), one registry per server instance so tests can run several servers
 * in one process. Modules receive the `Metrics` object and increment what they own.
 *
 * Each metric is one line: name, help, (histogram buckets,) label names. The helpers at the bottom
 * register it with this instance's registry.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const ROUTE_LABELS = ['route', 'method', 'status'] as const;

export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = this.counter('cachew_http_requests_total', 'HTTP requests by route and status', ROUTE_LABELS);
  readonly httpDuration = this.histogram(
    'cachew_http_request_duration_seconds',
    'HTTP request duration by route and status',
    [0.005, 0.02, 0.1, 0.5, 1, 5, 30, 120],
    ROUTE_LABELS,
  );
  readonly cacheHits = this.counter('cachew_cache_hits_total', 'Cache hits by tier', ['tier']);
  readonly cacheMisses = this.counter('cachew_cache_misses_total', 'Cache misses by tier', ['tier']);
  readonly cacheBytes = this.counter('cachew_cache_bytes_read_total', 'Bytes read from the cache by tier', ['tier']);
  readonly gitOperations = this.counter('cachew_git_operations_total', 'Mirror operations (clone, fetch) by outcome', ['op', 'outcome']);
  readonly gitDuration = this.histogram('cachew_git_operation_duration_seconds', 'Mirror operation duration', [0.05, 0.2, 1, 5, 20, 60, 300], ['op']);
  readonly upstreamRequests = this.counter('cachew_upstream_requests_total', 'Requests sent to upstream hosts (git and forwarded HTTP)', ['kind']);
  readonly bytesServed = this.counter('cachew_bytes_served_total', 'Response body bytes by kind (pack, snapshot, bundle)', ['kind']);
  readonly snapshotGenerations = this.counter('cachew_snapshot_generations_total', 'Snapshot generations by outcome', ['outcome']);

  readonly authChecks = this.counter('cachew_auth_checks_total', 'Passthrough access checks sent to the upstream, by outcome (allow, unauthorized, not_found, error)', ['host', 'outcome']);
  readonly authCacheHits = this.counter('cachew_auth_cache_hits_total', 'Passthrough access decisions answered from the decision cache, by decision', ['host', 'decision']);
  readonly authDenials = this.counter('cachew_auth_denials_total', 'Requests refused by the passthrough access gate, by status (401, 404)', ['host', 'status']);
  readonly storageDegraded = this.gauge('cachew_storage_degraded', '1 while the shared tier is unreachable and the replica serves from its local tiers (degraded mode)', ['tier']);
  readonly storageFailures = this.counter('cachew_storage_failures_total', 'Calls to the shared tier that failed because it was unreachable or refusing', ['tier']);
  readonly staleReads = this.counter('cachew_stale_metadata_reads_total', 'Pointer and record reads answered by a local copy while the shared tier was unreachable');
  readonly publishBacklog = this.gauge('cachew_publish_backlog', 'Snapshots generated while the shared tier was unreachable and not yet published to it');
  readonly generationLeases = this.counter('cachew_generation_lease_total', 'Generation lease outcomes (taken, took-over, waited, failed-open, timed-out)', ['outcome']);

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  private counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  private gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  private histogram<L extends string>(name: string, help: string, buckets: number[], labelNames: readonly L[]): Histogram<L> {
    return new Histogram({ name, help, buckets, labelNames, registers: [this.registry] });
  }
}
