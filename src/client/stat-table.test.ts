import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { STAT_FIELDS_BYTES, StatRecorder, StatTable, writeStatFields } from './stat-table.js';

let root: string;
before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'cachew-stat-table-'));
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

/** The stat fields of `file` as lstat sees it now. */
function lstatFields(file: string): Buffer {
  const out = Buffer.alloc(STAT_FIELDS_BYTES);
  writeStatFields(fs.lstatSync(file, { bigint: true }), out, 0);
  return out;
}

void describe('StatRecorder and StatTable', () => {
  void it('hand over every recorded path with the stat data lstat reports, across chunks', () => {
    const recorder = new StatRecorder();
    const names: string[] = [];
    // Enough records (with long names) to fill several of the recorder's 1 MiB chunks.
    const longDir = 'd'.repeat(200);
    fs.mkdirSync(path.join(root, longDir));
    for (let i = 0; i < 6_000; i++) {
      const name = `${longDir}/file-${i}-\u00e9`; // a latin1 byte above 0x7f in the name
      const fd = fs.openSync(path.join(root, name), 'wx');
      fs.writeSync(fd, `${i}\n`);
      fs.futimesSync(fd, 1_600_000_000 + i, 1_600_000_000 + i);
      recorder.record(name, fs.fstatSync(fd, { bigint: true }));
      fs.closeSync(fd);
      names.push(name);
    }
    fs.symlinkSync('target', path.join(root, 'link'));
    recorder.record('link', fs.lstatSync(path.join(root, 'link'), { bigint: true }));
    names.push('link');
    const table = new StatTable(recorder.take());
    assert.equal(table.size, names.length);
    for (const name of names) {
      assert.deepEqual(table.fields(name), lstatFields(path.join(root, name)), name);
    }
    const fields = table.fields(names[7])!;
    assert.equal(fields.readUInt32BE(8), 1_600_000_007, 'mtime seconds as set');
    assert.equal(fields.readUInt32BE(36), 2, 'size');
    assert.equal(table.fields('missing'), undefined);
    // copyFields writes the same 40 bytes at an offset of a larger buffer, and nothing else.
    const target = Buffer.alloc(STAT_FIELDS_BYTES + 10, 0xaa);
    assert.equal(table.copyFields(names[7], target, 5), true);
    assert.deepEqual(target.subarray(5, 5 + STAT_FIELDS_BYTES), fields);
    assert.deepEqual([...target.subarray(0, 5), ...target.subarray(5 + STAT_FIELDS_BYTES)], Array(10).fill(0xaa));
    assert.equal(table.copyFields('missing', target, 0), false);
    assert.equal(target[0], 0xaa, 'an unrecorded path leaves the target alone');
  });

  void it('stops recording at its byte cap, keeping what it has', () => {
    const file = path.join(root, 'capped');
    fs.writeFileSync(file, 'x');
    const stats = fs.lstatSync(file, { bigint: true });
    const recordBytes = 2 + 'f-0'.length + STAT_FIELDS_BYTES;
    const recorder = new StatRecorder(3 * recordBytes);
    for (let i = 0; i < 10; i++) recorder.record(`f-${i}`, stats);
    const table = new StatTable(recorder.take());
    assert.equal(table.size, 3);
    assert.ok(table.fields('f-2') !== undefined);
    assert.equal(table.fields('f-3'), undefined);
  });
});
