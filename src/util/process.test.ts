import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runProcess, spawnProcess } from './process.js';
import { AbortedError, CachewError, TimeoutError } from './errors.js';

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

void test('runProcess returns stdout, feeds stdin and reports a failure with the stderr tail', async () => {
  assert.equal(await runProcess('sh', ['-c', 'cat; echo done'], { env, input: 'in\n' }), 'in\ndone\n');
  await assert.rejects(runProcess('sh', ['-c', 'echo oops >&2; exit 3'], { env }), (err: unknown) => err instanceof CachewError && /failed \(3\): oops/.test(err.message));
  const custom = await runProcess('sh', ['-c', 'echo why >&2; exit 4'], { env, exitError: (code, _s, tail) => new Error(`custom ${code} ${tail.trim()}`) }).catch((e: Error) => e.message);
  assert.equal(custom, 'custom 4 why');
  await assert.rejects(runProcess('/nonexistent/program', [], { env, startError: () => new Error('cannot start') }), /cannot start/);
});

// A 10 s bound: if the grandchild survived the kill it would hold stdout open for 30 s, and `done`
// (which waits for the child's stdio to close) would not settle in time.
void test('a timeout or an abort kills the program, its whole group with processGroup', { timeout: 10_000 }, async () => {
  await assert.rejects(runProcess('sleep', ['30'], { env, timeoutMs: 50 }), TimeoutError);
  const controller = new AbortController();
  // The shell starts a grandchild that would keep stdout open for 30 s if the group were not killed.
  const proc = spawnProcess('sh', ['-c', 'sleep 30 & wait'], { env, signal: controller.signal, processGroup: true });
  proc.stdout.resume();
  controller.abort(new AbortedError('stop'));
  await assert.rejects(proc.done, AbortedError);
  const before = new AbortController();
  before.abort(new AbortedError('already'));
  await assert.rejects(runProcess('sleep', ['30'], { env, signal: before.signal }), /already/);
});

void test('exited reports the status without rejecting; the tail of stderr is kept', async () => {
  // 6000 bytes of stderr: more than the 4 KiB kept, so the head is dropped.
  const noisy = 'echo first >&2; i=0; while [ $i -lt 600 ]; do echo 123456789 >&2; i=$((i+1)); done; echo last >&2; exit 5';
  const tail = spawnProcess('sh', ['-c', noisy], { env });
  const tailExit = await tail.exited;
  assert.equal(tailExit.code, 5);
  assert.equal(tailExit.signal, null);
  assert.equal(tailExit.stderr.length, 4096);
  assert.ok(tailExit.stderr.endsWith('last\n') && !tailExit.stderr.includes('first'));
  await assert.rejects(tail.done, /failed \(5\): last/);
  const missing = await spawnProcess('/nonexistent/program', [], { env }).exited;
  assert.equal(missing.code, null);
  assert.match(missing.spawnError?.message ?? '', /ENOENT/);
});
