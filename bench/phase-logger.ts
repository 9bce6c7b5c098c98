/** Phase timing for the benchmarks, read from generateSnapshot's own debug log. */
import { pino } from 'pino';
import type { Logger } from '../src/util/logger.js';

/** A debug-level logger that hands each record (and its `msg`, `ms`) to `onRecord`, for phase timing. */
export function phaseLogger(onRecord: (msg: string, ms: number | undefined, record: Record<string, unknown>) => void): Logger {
  return pino(
    { level: 'debug', base: undefined },
    {
      write(line: string) {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (typeof record.msg === 'string') onRecord(record.msg, typeof record.ms === 'number' ? record.ms : undefined, record);
      },
    },
  );
}
