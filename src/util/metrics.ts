/**
 * Prometheus metrics (prom-client), one registry per server instance so tests can run several servers
 * in one process. Modules receive the `Metrics` object and increment what they own.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: 'cachew_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'cachew_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.005, 0.02, 0.1, 0.5, 1, 5, 30, 120],
    registers: [this.registry],
  });
  readonly cacheHits = new Counter({
    name: 'cachew_cache_hits_total',
    help: 'Cache hits by tier',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly cacheMisses = new Counter({
    name: 'cachew_cache_misses_total',
    help: 'Cache misses by tier',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly cacheBytes = new Counter({
    name: 'cachew_cache_bytes_read_total',
    help: 'Bytes read from the cache by tier',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly gitOperations = new Counter({
    name: 'cachew_git_operations_total',
    help: 'Mirror operations (clone, fetch) by outcome',
    labelNames: ['op', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly gitDuration = new Histogram({
    name: 'cachew_git_operation_duration_seconds',
    help: 'Mirror operation duration',
    labelNames: ['op'] as const,
    buckets: [0.05, 0.2, 1, 5, 20, 60, 300],
    registers: [this.registry],
  });
  readonly upstreamRequests = new Counter({
    name: 'cachew_upstream_requests_total',
    help: 'Requests sent to upstream hosts (git and forwarded HTTP)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly bytesServed = new Counter({
    name: 'cachew_bytes_served_total',
    help: 'Response body bytes by kind (pack, snapshot, bundle)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly snapshotGenerations = new Counter({
    name: 'cachew_snapshot_generations_total',
    help: 'Snapshot generations by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly authChecks = new Counter({
    name: 'cachew_auth_checks_total',
    help: 'Passthrough access checks sent to the upstream, by outcome (allow, unauthorized, not_found, error)',
    labelNames: ['host', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly authCacheHits = new Counter({
    name: 'cachew_auth_cache_hits_total',
    help: 'Passthrough access decisions answered from the decision cache, by decision',
    labelNames: ['host', 'decision'] as const,
    registers: [this.registry],
  });
  readonly authDenials = new Counter({
    name: 'cachew_auth_denials_total',
    help: 'Requests refused by the passthrough access gate, by status (401, 404)',
    labelNames: ['host', 'status'] as const,
    registers: [this.registry],
  });
  readonly storageDegraded = new Gauge({
    name: 'cachew_storage_degraded',
    help: '1 while the shared tier is unreachable and the replica serves from its local tiers (degraded mode)',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly storageFailures = new Counter({
    name: 'cachew_storage_failures_total',
    help: 'Calls to the shared tier that failed because it was unreachable or refusing',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly staleReads = new Counter({
    name: 'cachew_stale_metadata_reads_total',
    help: 'Pointer and record reads answered by a local copy while the shared tier was unreachable',
    registers: [this.registry],
  });
  readonly publishBacklog = new Gauge({
    name: 'cachew_publish_backlog',
    help: 'Snapshots generated while the shared tier was unreachable and not yet published to it',
    registers: [this.registry],
  });
  readonly generationLeases = new Counter({
    name: 'cachew_generation_lease_total',
    help: 'Generation lease outcomes (taken, took-over, waited, failed-open, timed-out)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
