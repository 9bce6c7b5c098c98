import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatBytes, parseSize } from './size.js';

void describe('parseSize', () => {
  void it('accepts bytes and binary units in any case', () => {
    assert.equal(parseSize('4096'), 4096);
    assert.equal(parseSize('512KiB'), 512 * 1024);
    assert.equal(parseSize('16MiB'), 16 * 1024 * 1024);
    assert.equal(parseSize('1GiB'), 1024 ** 3);
    assert.equal(parseSize('64k'), 64 * 1024);
    assert.equal(parseSize('2m'), 2 * 1024 * 1024);
    assert.equal(parseSize('1g'), 1024 ** 3);
    assert.equal(parseSize('8MB'), 8 * 1024 * 1024);
    assert.equal(parseSize(' 1.5m '), 1.5 * 1024 * 1024);
    assert.equal(parseSize('100b'), 100);
  });

  void it('rejects garbage, negatives, unknown units and fractional bytes', () => {
    for (const bad of ['', 'lots', '-1', '1x', '1 TiB', '0.5', 'MiB', '1e3', '99999999999999999999']) {
      assert.throws(() => parseSize(bad), /invalid size/, bad);
    }
  });
});

void describe('formatBytes', () => {
  void it('picks a readable unit', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
    assert.equal(formatBytes(1536), '1.50 KiB');
    assert.equal(formatBytes(16 * 1024 * 1024), '16.0 MiB');
  });
});
