/**
 * Fixture for S3-outage tests: an upstream with one repository, moto with a bucket, a TCP switch in
 * front of moto (moto keeps its bucket in memory, so stopping it would lose the bucket; the switch
 * resets connections, as an unreachable endpoint does), and replicas whose S3 endpoint is the switch.
 * `useOutageFixture()` registers before/after hooks for the calling test file.
 */
import { after, before } from 'node:test';
import { rm } from 'node:fs/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { startUpstream, type Upstream } from './upstream.js';
import { startCachew, type TestCachew } from './cachew.js';
import { startMoto, createBucket, s3ClientFor, type MotoServer } from './moto.js';
import { startTcpSwitch, type TcpSwitch } from './tcp-switch.js';

export const OUTAGE_BUCKET = 'outage';
export const OUTAGE_PREFIX = 'cachew';
export const OUTAGE_REPO = 'org/held';

export interface OutageFixture {
  upstream: Upstream;
  moto: MotoServer;
  s3Switch: TcpSwitch;
  /** A client straight on moto (never through the switch), to inspect the bucket. */
  client: S3Client;
  /** Starts a replica; `direct` puts it straight on moto instead of behind the switch. */
  replica(options?: { stateDir?: string; direct?: boolean }): Promise<TestCachew>;
  /** `<replica>/git/<host>/<repo>` */
  repoUrl(replica: TestCachew, repo?: string): string;
  /** Removed after the file's tests, with every replica started here. */
  keepStateDir(dir: string): void;
}

export function useOutageFixture(): OutageFixture {
  const replicas: TestCachew[] = [];
  const stateDirs: string[] = [];
  const fixture = {
    async replica(options: { stateDir?: string; direct?: boolean } = {}) {
      const endpoint = options.direct ? fixture.moto.endpoint : fixture.s3Switch.url;
      const s3 = { bucket: OUTAGE_BUCKET, endpoint, region: fixture.moto.region, prefix: OUTAGE_PREFIX };
      const started = await startCachew([fixture.upstream], { s3 }, options.stateDir ? { stateDir: options.stateDir } : {});
      replicas.push(started);
      return started;
    },
    repoUrl: (replica: TestCachew, repo = OUTAGE_REPO) => `${replica.url}/git/${fixture.upstream.hostName}/${repo}`,
    keepStateDir: (dir: string) => void stateDirs.push(dir),
  } as OutageFixture;

  before(async () => {
    fixture.upstream = await startUpstream();
    fixture.moto = await startMoto();
    await createBucket(fixture.moto, OUTAGE_BUCKET);
    fixture.s3Switch = await startTcpSwitch(fixture.moto.endpoint);
    fixture.client = s3ClientFor(fixture.moto);
    process.env.AWS_ACCESS_KEY_ID = fixture.moto.credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = fixture.moto.credentials.secretAccessKey;
    const files: Record<string, string> = {};
    for (let i = 0; i < 40; i++) files[`src/f${i}.txt`] = `${i}\n`.repeat(2_000 + i);
    await fixture.upstream.createRepo(OUTAGE_REPO, files);
  });

  after(async () => {
    try {
      for (const replica of replicas) await replica.stop();
      for (const dir of stateDirs) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    } finally {
      // Whatever failed above, the servers must stop: a live one keeps the test file from ending.
      fixture.client?.destroy();
      await fixture.s3Switch?.stop();
      await fixture.upstream?.stop();
      await fixture.moto?.stop();
    }
  });
  return fixture;
}
