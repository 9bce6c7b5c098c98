/**
 * Starts a worker thread from a module of this code base, whether it runs compiled (`dist/`, `.js`)
 * or from source under tsx (`.ts`, tests and benchmarks): Node does not carry the `--import tsx`
 * loader hooks into worker threads, so a `.ts` module is loaded through a small bootstrap that
 * registers tsx inside the worker first.
 */
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** The URL of the sibling module `name` (without extension) of `importMetaUrl`, with its extension. */
export function siblingModule(importMetaUrl: string, name: string): URL {
  return new URL(`./${name}${extname(fileURLToPath(importMetaUrl))}`, importMetaUrl);
}

/** A Worker running the module at `url`. */
export function startWorker(url: URL, options: WorkerOptions = {}): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, options);
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(bootstrap, { ...options, eval: true });
}
