/**
 * Helpers for tests with several cachewd replicas on one moto bucket: what each replica did (from its
 * metrics), what the bucket holds, and a gate that holds a replica's upstream requests until opened.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ListObjectsV2Command, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { TestCachew } from './cachew.js';

/** The value of one labelled counter or gauge of a replica's metrics (0 when never set). */
export async function metricValue(
  replica: TestCachew,
  name: 'snapshotGenerations' | 'generationLeases' | 'storageDegraded' | 'publishBacklog' | 'staleReads',
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = replica.server.metrics[name];
  const { values } = await metric.get();
  let sum = 0;
  for (const value of values) {
    if (Object.entries(labels).every(([k, v]) => (value.labels as Record<string, unknown>)[k] === v)) sum += value.value;
  }
  return sum;
}

/** Successful snapshot generations summed over `replicas`. */
export async function generations(replicas: TestCachew[]): Promise<number> {
  let total = 0;
  for (const replica of replicas) total += await metricValue(replica, 'snapshotGenerations', { outcome: 'ok' });
  return total;
}

/** Every object key under `prefix` in the bucket (temp objects included: a test wants to see them). */
export async function bucketKeys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const entry of page.Contents ?? []) if (entry.Key) keys.push(entry.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

/** The JSON body of one object. */
export async function bucketJson(client: S3Client, bucket: string, key: string): Promise<unknown> {
  const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse((await response.Body?.transformToString()) ?? 'null');
}

/**
 * Snapshot blobs in the bucket: every blob except those the shared layer records name (layer packs
 * live in the same content-addressed store).
 */
export async function snapshotBlobs(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const checkpointDigests = new Set<string>();
  for (const key of await bucketKeys(client, bucket, `${prefix}/layers/`)) {
    const text = JSON.stringify(await bucketJson(client, bucket, key));
    for (const match of text.matchAll(/[0-9a-f]{64}/g)) checkpointDigests.add(match[0]);
  }
  const blobs = await bucketKeys(client, bucket, `${prefix}/blobs/`);
  return blobs.filter((key) => !checkpointDigests.has(key.slice(key.lastIndexOf('/') + 1)));
}

export interface Gate {
  url: string;
  /** Requests that arrived (held or forwarded). */
  seen: number;
  open(): void;
  stop(): Promise<void>;
}

/** A proxy to `target` that holds every request until open() (a slow or stuck upstream clone). */
export async function startGate(target: string): Promise<Gate> {
  const targetUrl = new URL(target);
  let opened = false;
  const held: Array<() => void> = [];
  const gate = { seen: 0 } as Gate;
  const server = http.createServer((req, res) => {
    gate.seen++;
    const forward = (): void => {
      const upstream = http.request(
        { host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers: { ...req.headers, host: targetUrl.host } },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if (opened) forward();
    else held.push(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  gate.url = `http://127.0.0.1:${port}`;
  gate.open = () => {
    opened = true;
    for (const forward of held.splice(0)) forward();
  };
  gate.stop = async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return gate;
}
