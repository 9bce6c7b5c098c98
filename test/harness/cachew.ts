/**
 * Starts an in-process cachewd on a free loopback port with its own temp state dir, for end-to-end
 * tests. Everything it creates is removed by `stop()`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFIG, type CachewConfig } from '../../src/config/types.js';
import { startServer, type RunningServer, type ServerHooks } from '../../src/server/server.js';
import { silentLogger, type Logger } from '../../src/util/logger.js';
import type { Clock } from '../../src/util/clock.js';
import type { Upstream } from './upstream.js';

/**
 * Limits short and small enough for tests to hit them within seconds (limits, hostile requests):
 * headers in 1 s, a request in 3 s, idle keep-alive 0.5 s, 200 connections, 1 MiB bodies.
 */
export const TIGHT_HTTP_LIMITS: CachewConfig['http'] = {
  ...DEFAULT_CONFIG.http,
  headersTimeoutMs: 1000,
  requestTimeoutMs: 3000,
  keepAliveTimeoutMs: 500,
  idleTimeoutMs: 3000,
  maxConnections: 200,
  maxUploadPackBytes: 1024 * 1024,
  maxForwardBytes: 1024 * 1024,
};

export interface TestCachew {
  url: string;
  server: RunningServer;
  stateDir: string;
  stop(): Promise<void>;
}

/** What a test config needs of an upstream harness (the real one or a hostile front for it). */
export type UpstreamAddress = Pick<Upstream, 'hostName' | 'url'>;

/** Builds a test config: loopback, free port, short intervals, the given upstreams. */
export function testConfig(stateDir: string, upstreams: UpstreamAddress[], overrides: Partial<CachewConfig> = {}): CachewConfig {
  return {
    ...DEFAULT_CONFIG,
    bind: { host: '127.0.0.1', port: 0 },
    stateDir,
    logLevel: 'silent',
    upstreams: upstreams.map((u) => ({ name: u.hostName, baseUrl: u.url })),
    snapshotIntervalMs: 0,
    refCheckIntervalMs: 1000,
    mirrorWaitMs: 60_000,
    shutdownGraceMs: 5000,
    memoryLimitMb: 64,
    diskLimitMb: 2048,
    ...overrides,
  };
}

/**
 * Starts cachewd. With `clock` (a ManualClock) the server's TTLs, ref checks, retention and scheduler
 * only move when the test advances it; `presignClock` sets the signing time of presigned S3 URLs.
 */
export async function startCachew(
  upstreams: UpstreamAddress[],
  overrides: Partial<CachewConfig> = {},
  options: { stateDir?: string; clock?: Clock; presignClock?: () => number; logger?: Logger; hooks?: ServerHooks } = {},
): Promise<TestCachew> {
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), 'cachew-state-')));
  const server = await startServer(testConfig(stateDir, upstreams, overrides), {
    logger: options.logger ?? silentLogger,
    clock: options.clock,
    presignClock: options.presignClock,
    hooks: options.hooks,
  });
  return {
    url: server.url,
    server,
    stateDir,
    async stop() {
      await server.close();
      if (!options.stateDir) await rm(stateDir, { recursive: true, force: true });
    },
  };
}
