import { pino, type Logger, type LevelWithSilent } from 'pino';

/**
 * The root structured logger. Modules take a child (`logger.child({ module: 'disk' })`) so every line
 * says where it came from. Tests run with level `silent` unless CACHEW_TEST_LOG is set.
 */
export type { Logger };

export function createLogger(level: LevelWithSilent = 'info'): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that writes nothing; the default for library code and tests. */
export const silentLogger: Logger = pino({ level: process.env.CACHEW_TEST_LOG ?? 'silent' });
