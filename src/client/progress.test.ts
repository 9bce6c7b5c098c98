import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderProgress } from './progress.js';

void describe('renderProgress', () => {
  void it('shows percentage, bytes, rate and ETA', () => {
    const line = renderProgress({ bytes: 5 * 1024 * 1024, total: 20 * 1024 * 1024, elapsed: 1 }, 100);
    assert.match(line, /^\[#+\.+\] {2}25% {2}5\.00 MiB \/ 20\.0 MiB {2}5\.00 MiB\/s {2}ETA 3s$/);
    assert.ok(line.length <= 100, line);
  });

  void it('copes with the start and the end of a download', () => {
    assert.match(renderProgress({ bytes: 0, total: 100, elapsed: 0 }), / {2}0% .* ETA --$/);
    const done = renderProgress({ bytes: 100, total: 100, elapsed: 2 });
    assert.match(done, /^\[#+\] 100% .* ETA 0s$/);
    assert.match(renderProgress({ bytes: 1, total: 10_000_000, elapsed: 1 }), /ETA \d+h\d{2}m$/);
  });
});
