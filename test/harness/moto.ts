/**
 * Test harness: a real S3 API on loopback (moto_server), one process per test file.
 *
 * Credentials are fake and passed explicitly, so a developer's AWS environment is never read or used.
 */
import { after, before } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';

export interface MotoServer {
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
const START_ATTEMPTS = 3;
const READY_TIMEOUT_MS = 30_000;

/** Asks the kernel for a free port, then releases it for moto_server to bind. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Kills the whole process group (moto_server may run behind a pyenv shim). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

async function waitReady(endpoint: string, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    try {
      const response = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      return true;
    } catch {
      await delay(100);
    }
  }
  return false;
}

/**
 * moto_server handles requests on threads without locking, so its conditional writes are
 * check-then-act (two `If-None-Match: *` CompleteMultipartUploads can both succeed) and concurrent puts
 * of one key can fail with 500 (it closes the old object's buffer while another thread reads it). Real
 * S3 does neither. This `sitecustomize` (loaded by Python at startup via PYTHONPATH, before moto imports
 * werkzeug's `run_simple`) serializes request handling and buffers each response inside the lock, so
 * every S3 call is atomic, while slow clients still only hold the lock for as long as moto computes.
 */
const SITECUSTOMIZE = `
import threading
try:
    import werkzeug.serving as _serving
except Exception:
    _serving = None
if _serving is not None:
    _original_run_simple = _serving.run_simple
    _lock = threading.Lock()

    def _run_simple(hostname, port, application, *args, **kwargs):
        def serialized(environ, start_response):
            with _lock:
                result = application(environ, start_response)
                try:
                    body = [bytes(chunk) for chunk in result]
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            return body

        return _original_run_simple(hostname, port, serialized, *args, **kwargs)

    _serving.run_simple = _run_simple
`;

async function launch(): Promise<MotoServer | undefined> {
  const port = await freePort();
  const siteDir = await mkdtemp(join(tmpdir(), 'cachew-moto-'));
  await writeFile(join(siteDir, 'sitecustomize.py'), SITECUSTOMIZE);
  const pythonPath = [siteDir, process.env.PYTHONPATH].filter(Boolean).join(delimiter);
  const endpoint = `http://127.0.0.1:${port}`;
  // A shell watchdog: moto_server dies when our stdin pipe closes, i.e. when this process exits for any
  // reason (even SIGKILL or a test-runner timeout), so no server outlives its test file. Its own process
  // group lets stop() kill the shell, the pyenv shim and python together.
  const script = 'moto_server -H 127.0.0.1 -p "$1" & pid=$!; read -r _ignored; kill "$pid" 2>/dev/null; wait "$pid"';
  const child = spawn('sh', ['-c', script, 'sh', String(port)], {
    detached: true,
    stdio: ['pipe', 'ignore', 'pipe'],
    env: {
      ...process.env,
      PYTHONPATH: pythonPath,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_DEFAULT_REGION: REGION,
    },
  });
  let stderrTail = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-2_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // Writing is never needed; an EPIPE after the shell is gone must not throw.
  child.stdin?.on('error', () => undefined);
  child.once('error', () => undefined);
  // If the test process exits without calling stop(), do not leave moto_server behind.
  const onExit = (): void => killGroup(child, 'SIGKILL');
  process.once('exit', onExit);

  const stop = async (): Promise<void> => {
    process.removeListener('exit', onExit);
    killGroup(child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
    await rm(siteDir, { recursive: true, force: true });
  };

  if (await waitReady(endpoint, child)) {
    return { endpoint, region: REGION, credentials: { ...CREDENTIALS }, stop };
  }
  await stop();
  if (/address already in use/i.test(stderrTail)) return undefined; // lost the port race; retry
  throw new Error(`moto_server did not become ready on ${endpoint}: ${stderrTail.trim().split('\n').pop() ?? ''}`);
}

/** Starts moto_server on a free 127.0.0.1 port and waits until it answers. */
export async function startMoto(): Promise<MotoServer> {
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const server = await launch();
    if (server) return server;
  }
  throw new Error(`moto_server could not bind a free port after ${START_ATTEMPTS} attempts`);
}

/** An S3 client for `moto`: path-style addressing, fake credentials, no retries of 4xx. */
export function s3ClientFor(moto: MotoServer): S3Client {
  return new S3Client({
    endpoint: moto.endpoint,
    region: moto.region,
    credentials: moto.credentials,
    forcePathStyle: true,
  });
}

/** Creates `bucket` on `moto`. */
export async function createBucket(moto: MotoServer, bucket: string): Promise<void> {
  const client = s3ClientFor(moto);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

/**
 * For a test file: starts moto with one bucket before its tests and stops it after them, handing the
 * server and a client to `onReady` (the file keeps them in its own variables).
 */
export function useMotoBucket(bucket: string, onReady: (moto: MotoServer, client: S3Client) => void): void {
  let moto: MotoServer | undefined;
  let client: S3Client | undefined;
  before(async () => {
    moto = await startMoto();
    client = s3ClientFor(moto);
    await createBucket(moto, bucket);
    onReady(moto, client);
  });
  after(async () => {
    client?.destroy();
    await moto?.stop();
  });
}
