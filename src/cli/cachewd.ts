#!/usr/bin/env node
/**
 * cachewd: the server. Exit codes: 0 after a graceful stop, 2 for bad configuration (one line on
 * stderr), 1 for any other start-up failure.
 */
import { loadConfig, usage } from '../config/load.js';
import { startServer } from '../server/server.js';
import { CachewError } from '../util/errors.js';
import { createLogger } from '../util/logger.js';

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`cachewd: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (loaded.help) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  const logger = createLogger(loaded.config.logLevel);
  let server;
  try {
    server = await startServer(loaded.config, { logger });
  } catch (err) {
    const reason = err instanceof CachewError || (err as NodeJS.ErrnoException).code ? (err as Error).message : String(err);
    process.stderr.write(`cachewd: cannot start: ${reason.split('\n')[0]}\n`);
    process.exit(err instanceof CachewError && err.code === 'config' ? 2 : 1);
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

void main();
