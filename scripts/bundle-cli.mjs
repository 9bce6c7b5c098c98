#!/usr/bin/env node
// Bundles the restore client's command (`cachew`, package.json `bin`) and its extraction thread into
// one file each, in dist/bundle/ (or the directory given as argument), straight from src/. Why: a
// restore is on a CI job's critical path, and Node resolving, reading and linking the ~50 ES modules
// of dist/ took ~30 ms of every start on the test machine (`cachew --help`: 0.13 s from dist/, 0.10 s
// bundled). The thread's file sits next to the command's, where `siblingModule` looks for it. The
// libzstd addon stays a package (native code). Types are checked by `tsc`, not here.
import { build } from 'esbuild';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = path.resolve(import.meta.dirname, '..');

/** Writes `cachew.js` and `extract-worker.js` into `outdir`. */
export async function bundleCli(outdir = path.join(root, 'dist/bundle')) {
  await build({
    entryPoints: [path.join(root, 'src/cli/cachew.ts'), path.join(root, 'src/client/extract-worker.ts')],
    outdir,
    entryNames: '[name]',
    outExtension: { '.js': '.js' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['zstd-napi', 'zstd-napi/*'],
    logLevel: 'warning',
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await bundleCli(process.argv[2]);
