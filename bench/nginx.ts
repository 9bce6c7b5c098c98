/**
 * nginx as the serving baseline: a throwaway instance with its own prefix, config and port on
 * 127.0.0.1, `daemon off` so it is our child and dies with its process group. Configured the way a
 * distribution's default site serves static files (sendfile, keep-alive, byte ranges), logging off.
 */
import { spawn } from 'node:child_process';
import { access, chmod, mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Cleanup, freePort, killGroup, waitUntil } from './util.js';

export interface Nginx {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** Files put here are served at `url/<name>`. */
  docRoot: string;
  /** The master process; its workers are its children. */
  pid: number;
  stop(): Promise<void>;
}

const CANDIDATES = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'];

/** The nginx binary, or undefined when it is not installed. */
export async function findNginx(): Promise<string | undefined> {
  for (const candidate of CANDIDATES) {
    try {
      await access(candidate);
      return candidate;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/**
 * Starts nginx in `baseDir` (an empty temp directory): `baseDir/root` is the document root (files put
 * there must be world-readable, since workers started by root run as `nobody`), `baseDir/prefix`
 * holds its pid file, logs and temp dirs.
 */
export async function startNginx(binary: string, baseDir: string, cleanup: Cleanup): Promise<Nginx> {
  const port = await freePort();
  const docRoot = path.join(baseDir, 'root');
  const prefix = path.join(baseDir, 'prefix');
  await mkdir(docRoot, { recursive: true });
  await mkdir(path.join(prefix, 'logs'), { recursive: true });
  // mkdtemp makes 0700 directories; the workers must be able to walk down to the document root.
  await chmod(baseDir, 0o755);
  await chmod(docRoot, 0o755);
  const config = `
worker_processes auto;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 65;
  keepalive_requests 10000;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  types { application/zstd zst; }
  server {
    listen 127.0.0.1:${port};
    root ${docRoot};
  }
}
`;
  const configPath = path.join(prefix, 'nginx.conf');
  await writeFile(configPath, config);
  const child = spawn(binary, ['-p', prefix, '-c', configPath, '-e', path.join(prefix, 'logs', 'error.log')], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2000);
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  child.on('error', (err) => {
    stderr += err.message;
  });
  const stop = cleanup.add('nginx', async () => {
    killGroup(child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child), 5000);
    await exited;
    clearTimeout(timer);
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitUntil('nginx', 10_000, async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nginx exited: ${stderr.trim()}`);
      return new Promise<boolean>((resolve) => {
        const req = http.get(`${url}/`, (res) => {
          res.resume();
          resolve(true);
        });
        req.on('error', () => resolve(false));
      });
    });
  } catch (err) {
    await stop();
    throw new Error(`nginx did not start: ${(err as Error).message} ${stderr.trim()}`);
  }
  if (child.pid === undefined) throw new Error('nginx has no pid');
  return { url, docRoot, pid: child.pid, stop };
}
