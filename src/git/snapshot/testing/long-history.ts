/**
 * Test fixture: a bare upstream whose `main` has a long first-parent history (enough for several
 * snapshot layers, layers.ts), built by one `git fast-import` with fixed dates so every run makes the
 * same objects. Each commit edits one line of a larger file (so packs have deltas) and adds a small one.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cleanGitEnv, runGit } from '../../command.js';
import { CachewError } from '../../../util/errors.js';
import { pseudoText } from './archive-fixture.js';

/** Creates the bare repository `bareDir` with `commits` commits on main; returns them oldest first. */
export async function buildLongHistory(bareDir: string, commits: number): Promise<string[]> {
  await runGit(['init', '-q', '--bare', '--initial-branch=main', bareDir]);
  const child = spawn('git', ['fast-import', '--quiet', '--done'], { cwd: bareDir, env: cleanGitEnv(), stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const closed = once(child, 'close');
  const data = (text: string): string => `data ${Buffer.byteLength(text)}\n${text}\n`;
  const lines = pseudoText(7, 800).split('\n');
  const parts: string[] = [];
  for (let i = 1; i <= commits; i++) {
    const time = 1_600_000_000 + i * 60;
    lines[(i * 31) % lines.length] = `changed by commit ${i}`;
    parts.push(
      `commit refs/heads/main\n`,
      `author A U Thor <a@example.com> ${time} +0000\ncommitter C O Mitter <c@example.com> ${time} +0000\n`,
      data(`commit ${i}\n`),
      `M 100644 inline big.txt\n${data(lines.join('\n'))}`,
      `M 100644 inline notes/${i % 10}/${i}.txt\n${data(pseudoText(i, 4))}`,
      '\n',
    );
  }
  parts.push('done\n');
  child.stdin.end(parts.join(''));
  const [code] = (await closed) as [number | null];
  if (code !== 0) throw new CachewError('internal', `fast-import failed: ${stderr}`);
  const mainline = (await runGit(['rev-list', '--first-parent', '--reverse', 'main'], { cwd: bareDir })).trim().split('\n');
  if (mainline.length !== commits) throw new CachewError('internal', `expected ${commits} commits, got ${mainline.length}`);
  return mainline;
}
