/**
 * A one-line progress bar for a TTY: bytes, rate, ETA. Redrawn at most every 100 ms; the caller
 * decides whether to show it at all (only when stderr is a terminal).
 */
import { formatBytes } from './size.js';

export interface ProgressSnapshot {
  bytes: number;
  total: number;
  /** Seconds since the download started. */
  elapsed: number;
}

/** Renders `[#####.....]  45%  12.3 MiB / 27.0 MiB  5.10 MiB/s  ETA 3s` within `width` columns. */
export function renderProgress({ bytes, total, elapsed }: ProgressSnapshot, width = 80): string {
  const fraction = total > 0 ? Math.min(1, bytes / total) : 0;
  const rate = elapsed > 0 ? bytes / elapsed : 0;
  const eta = rate > 0 ? Math.max(0, (total - bytes) / rate) : undefined;
  const text = `${(fraction * 100).toFixed(0).padStart(3)}%  ${formatBytes(bytes)} / ${formatBytes(total)}  ${formatBytes(rate)}/s  ETA ${formatDuration(eta)}`;
  const barWidth = Math.max(10, Math.min(40, width - text.length - 4));
  const filled = Math.round(fraction * barWidth);
  return `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${text}`;
}

function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Draws `renderProgress` lines on a TTY stream, throttled; `done()` clears the line. */
export class ProgressBar {
  private readonly started = performance.now();
  private lastDraw = 0;
  private label = '';

  constructor(private readonly stream: NodeJS.WriteStream) {}

  update(bytes: number, total: number, label = ''): void {
    const now = performance.now();
    if (label === this.label && now - this.lastDraw < 100 && bytes < total) return;
    this.lastDraw = now;
    this.label = label;
    const width = this.stream.columns || 80;
    const line = `${label ? `${label} ` : ''}${renderProgress({ bytes, total, elapsed: (now - this.started) / 1000 }, width - label.length - 1)}`;
    this.stream.write(`\r${line.slice(0, width - 1)}\x1b[K`);
  }

  done(): void {
    this.stream.write('\r\x1b[K');
  }
}
