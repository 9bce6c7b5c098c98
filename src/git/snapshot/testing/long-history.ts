/**
 * Test fixture: a bare upstream whose `main` has a long first-parent history (enough for several
 * snapshot layers, layers.ts), built by one `git fast-import` with fixed dates so every run makes the
 * same objects. Each commit edits one line of a larger file (so packs have deltas) and adds a small one.
 */
import { runGit } from '../../command.js';
import { CachewError } from '../../../util/errors.js';
import { pseudoText } from './archive-fixture.js';

/** Creates the bare repository `bareDir` with `commits` commits on main; returns them oldest first. */
export async function buildLongHistory(bareDir: string, commits: number): Promise<string[]> {
  await runGit(['init', '-q', '--bare', '--initial-branch=main', bareDir]);
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
  await runGit(['fast-import', '--quiet', '--done'], { cwd: bareDir, input: parts.join('') });
  const mainline = (await runGit(['rev-list', '--first-parent', '--reverse', 'main'], { cwd: bareDir })).trim().split('\n');
  if (mainline.length !== commits) throw new CachewError('internal', `expected ${commits} commits, got ${mainline.length}`);
  return mainline;
}
