import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { STALE_AFTER_MS, makeTempSibling, removeStaleSiblings } from './temp-siblings.js';

let root: string;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-siblings-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

void it('removes only our stale siblings: dead pid on this host, or untouched past the bound', async () => {
  const target = path.join(root, 'clone');
  const now = Date.now();
  const mine = await makeTempSibling(target); // this host, this (live) pid
  const hostAndPid = /\.cachew-tmp-([0-9a-f]{8})-(\d+)-/.exec(mine)!;
  assert.equal(Number(hostAndPid[2]), process.pid);
  const host = hostAndPid[1];
  const dead = `${target}.cachew-tmp-${host}-999999-aaaaaaaaaaaa`;
  const otherHost = `${target}.cachew-tmp-00000000-999999-bbbbbbbbbbbb`;
  const legacyFresh = `${target}.cachew-tmp-cccccccccccc`;
  const legacyOld = `${target}.cachew-tmp-dddddddddddd`;
  const notOurs = `${target}.cachew-tmp-backup`;
  const otherTarget = `${target}2.cachew-tmp-${host}-999999-eeeeeeeeeeee`;
  const aFile = `${target}.cachew-tmp-${host}-999999-ffffffffffff`;
  for (const dir of [dead, otherHost, legacyFresh, legacyOld, notOurs, otherTarget]) await fs.mkdir(dir);
  await fs.writeFile(path.join(dead, 'partial'), 'x');
  await fs.writeFile(aFile, 'a file with our name shape is not ours');
  const longAgo = new Date(now - STALE_AFTER_MS - 60_000);
  await fs.utimes(legacyOld, longAgo, longAgo);

  const removed = await removeStaleSiblings(target, { now, isAlive: (pid) => pid === process.pid });
  assert.deepEqual(removed.sort(), [path.basename(dead), path.basename(legacyOld)].sort());
  const left = (await fs.readdir(root)).sort();
  assert.deepEqual(left, [mine, otherHost, legacyFresh, notOurs, otherTarget, aFile].map((p) => path.basename(p)).sort());

  // A day later (by the injected clock) everything of ours that is still there is stale, live pid or not.
  const later = await removeStaleSiblings(target, { now: now + STALE_AFTER_MS + 60_000, isAlive: () => true });
  assert.deepEqual(later.sort(), [mine, otherHost, legacyFresh].map((p) => path.basename(p)).sort());
  assert.deepEqual((await fs.readdir(root)).sort(), [notOurs, otherTarget, aFile].map((p) => path.basename(p)).sort());
});
