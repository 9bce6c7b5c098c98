import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AbortedError } from '../util/errors.js';
import { GitLauncher } from './git-launcher.js';
import { runGit } from './git.js';

let root: string;
before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'cachew-launcher-'));
});
after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function freshDir(name: string): Promise<string> {
  const dir = path.join(root, name);
  await fs.mkdir(dir);
  return dir;
}

const exists = (file: string): Promise<boolean> =>
  fs.access(file).then(
    () => true,
    () => false,
  );

void describe('GitLauncher', () => {
  void it('runs a parked command only when released, against the directory as it is then', async () => {
    const dir = await freshDir('released');
    const launcher = new GitLauncher();
    launcher.park(['rev-parse', '--git-dir'], dir);
    // Parked before the repository exists: git has not started yet, so it finds the one made now.
    await runGit(['init', '--quiet'], dir);
    assert.equal(await launcher.run(['rev-parse', '--git-dir'], dir), '.git');
    await launcher.close();
  });

  void it('never runs git for a command closed without being released', async () => {
    const dir = await freshDir('closed');
    const launcher = new GitLauncher();
    launcher.park(['init', '--quiet'], dir);
    await launcher.close();
    assert.equal(await exists(path.join(dir, '.git')), false);
  });

  void it('starts commands that were not parked, or are run a second time, the usual way', async () => {
    const dir = await freshDir('unparked');
    await runGit(['init', '--quiet'], dir);
    const launcher = new GitLauncher();
    launcher.park(['rev-parse', '--is-inside-work-tree'], dir);
    assert.equal(await launcher.run(['rev-parse', '--is-inside-work-tree'], dir), 'true');
    assert.equal(await launcher.run(['rev-parse', '--is-inside-work-tree'], dir), 'true');
    // Another environment is another command.
    launcher.park(['var', 'GIT_COMMITTER_IDENT'], dir, { GIT_COMMITTER_NAME: 'A' });
    assert.match(await launcher.run(['var', 'GIT_COMMITTER_IDENT'], dir, undefined, { GIT_COMMITTER_NAME: 'B' }), /^B </);
    await launcher.close();
  });

  void it("reports a parked command's failure like runGit", async () => {
    const dir = await freshDir('failing');
    const launcher = new GitLauncher();
    launcher.park(['rev-parse', '--verify', 'no-such-ref'], dir);
    await assert.rejects(launcher.run(['rev-parse', '--verify', 'no-such-ref'], dir), /rev-parse/);
    await launcher.close();
  });

  void it('ends parked processes when its signal aborts, and a release then fails with the reason', async () => {
    const dir = await freshDir('aborted');
    const controller = new AbortController();
    const launcher = new GitLauncher(controller.signal);
    launcher.park(['init', '--quiet'], dir);
    controller.abort(new Error('restore failed'));
    await assert.rejects(launcher.run(['init', '--quiet'], dir), (err: unknown) => err instanceof AbortedError && (err.cause as Error).message === 'restore failed');
    await launcher.close();
    assert.equal(await exists(path.join(dir, '.git')), false);
  });
});
