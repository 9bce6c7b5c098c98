/**
 * The restore client as users run it: compiled to dist/ (`npm run build`), so its extraction thread
 * starts as plain JavaScript. Imported from src/ under tsx, every restore would first load the tsx
 * loader into that thread (~0.3 s on the test machine), which no user pays.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { extractZstd as ExtractZstd } from '../src/client/archive.js';
import type { restore as Restore } from '../src/client/restore.js';
import { log, run } from './util.js';

const ROOT = path.resolve(import.meta.dirname, '..');

export interface CompiledClient {
  restore: typeof Restore;
  extractZstd: typeof ExtractZstd;
  /** The `cachew` command as installed (`node <this>`), for timing what users run. */
  cliPath: string;
}

let building: Promise<void> | undefined;
let loading: Promise<CompiledClient> | undefined;

/** Builds dist/ once per bench run (`npm run build`): the client and cachewd run from it, as users run them. */
export function ensureBuilt(): Promise<void> {
  building ??= (async () => {
    log('building dist/ (npm run build): cachewd and the restore client run compiled, as users run them');
    await run('npm', ['run', '--silent', 'build'], { cwd: ROOT, timeoutMs: 600_000 });
  })();
  return building;
}

/** Builds dist/ once per bench run and imports the client from it. */
export function compiledClient(): Promise<CompiledClient> {
  loading ??= (async () => {
    await ensureBuilt();
    const dist = (file: string): string => pathToFileURL(path.join(ROOT, 'dist', file)).href;
    const [{ restore }, { extractZstd }] = await Promise.all([
      import(dist('client/restore.js')) as Promise<{ restore: typeof Restore }>,
      import(dist('client/archive.js')) as Promise<{ extractZstd: typeof ExtractZstd }>,
    ]);
    // The command as installed (package.json `bin`): the bundle (scripts/bundle-cli.mjs).
    return { restore, extractZstd, cliPath: path.join(ROOT, 'dist', 'bundle', 'cachew.js') };
  })();
  return loading;
}
